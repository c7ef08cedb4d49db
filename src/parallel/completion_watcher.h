// CompletionWatcher: records when asynchronous collectives complete, for the
// engine's trace. The communicator runs collectives in issue order, so one
// thread waiting on them in FIFO order sees each completion promptly.
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <utility>

#include "dtrain/comm/communicator.h"
#include "dtrain/parallel/trace.h"

namespace dtrain::parallel::detail {

class CompletionWatcher {
 public:
  explicit CompletionWatcher(Trace& trace);
  ~CompletionWatcher();
  CompletionWatcher(const CompletionWatcher&) = delete;
  CompletionWatcher& operator=(const CompletionWatcher&) = delete;

  // Ends trace event `event` when `work` completes.
  void watch(const comm::Work& work, size_t event);

 private:
  void run();

  Trace& trace_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::pair<comm::Work, size_t>> queue_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace dtrain::parallel::detail
