// Internal: the Gloo backend (CPU tensors over TCP).
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "comm/backend.h"
#include "dtrain/comm/store.h"

namespace gloo {
class Context;
namespace transport {
class UnboundBuffer;
}
}  // namespace gloo

namespace dtrain::comm {

class GlooBackend final : public Backend {
 public:
  // Connects a full mesh of TCP pairs, rendezvousing through `store`
  // (a prefix private to this communicator). `address` is this rank's
  // reachable IP; `timeout` bounds the rendezvous and every operation.
  GlooBackend(std::shared_ptr<Store> store, int rank, int size, const std::string& address,
              std::chrono::milliseconds timeout);
  ~GlooBackend() override;

  const char* name() const override { return "gloo"; }
  Completion run(const OpArgs& args) override;
  // Gloo operations cannot be cancelled from outside; their own timeout bounds them.
  void abort() override {}

 private:
  void all_reduce(const Tensor& input, const Tensor& output, ReduceOp op);
  void reduce_scatter(const Tensor& input, const Tensor& output, ReduceOp op);
  void all_gather(const Tensor& input, const Tensor& output);
  void broadcast(const Tensor& tensor, int root);
  void all_to_all(const Tensor& input, const Tensor& output);
  Completion send(const Tensor& tensor, int peer, uint32_t tag);
  void sender_loop();
  void recv(const Tensor& tensor, int peer, uint32_t tag);
  void barrier();

  int size_;
  std::chrono::milliseconds timeout_;
  std::shared_ptr<gloo::Context> context_;

  // [Gloo sends] A Gloo send completes only once the peer posted the
  // matching recv, so waiting for it on the worker thread would deadlock a
  // ring of send-then-recv. Sends are posted by the worker and waited for,
  // in order, by this thread; their Work completes through a poll.
  struct PendingSend;
  std::mutex send_mutex_;
  std::condition_variable send_cv_;
  std::deque<std::shared_ptr<PendingSend>> sends_;
  std::shared_ptr<PendingSend> waiting_send_;
  bool stop_sender_ = false;
  std::thread sender_;
};

}  // namespace dtrain::comm
