// Internal: Gloo rendezvouses through dtrain's Store (its own interface is
// set/get/wait over byte vectors).
#pragma once

#include <gloo/rendezvous/store.h>

#include <memory>

#include "dtrain/comm/store.h"

namespace dtrain::comm {

class GlooStoreAdapter final : public gloo::rendezvous::Store {
 public:
  explicit GlooStoreAdapter(std::shared_ptr<comm::Store> store) : store_(std::move(store)) {}

  void set(const std::string& key, const std::vector<char>& data) override {
    store_->set(key, std::string(data.begin(), data.end()));
  }
  std::vector<char> get(const std::string& key) override {
    const std::string v = store_->get(key);
    return std::vector<char>(v.begin(), v.end());
  }
  void wait(const std::vector<std::string>& keys) override { store_->wait(keys); }
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) override {
    store_->wait(keys, timeout);
  }

 private:
  std::shared_ptr<comm::Store> store_;
};

}  // namespace dtrain::comm
