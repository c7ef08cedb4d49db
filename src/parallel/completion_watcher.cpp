#include "parallel/completion_watcher.h"

namespace dtrain::parallel::detail {

CompletionWatcher::CompletionWatcher(Trace& trace) : trace_(trace), thread_([this] { run(); }) {}

CompletionWatcher::~CompletionWatcher() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void CompletionWatcher::watch(const comm::Work& work, size_t event) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.emplace_back(work, event);
  }
  cv_.notify_all();
}

void CompletionWatcher::run() {
  for (;;) {
    std::pair<comm::Work, size_t> item;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;
      item = queue_.front();
      queue_.pop_front();
    }
    try {
      item.first.wait();
    } catch (...) {
      // The engine's own wait reports the error.
    }
    trace_.end(item.second);
  }
}

}  // namespace dtrain::parallel::detail
