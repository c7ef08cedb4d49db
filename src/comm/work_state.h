// Internal: the state a Work handle shares with the communicator's worker
// and watchdog threads.
#pragma once

#include <chrono>
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <utility>

namespace dtrain::comm::detail {

struct WorkState {
  using Clock = std::chrono::steady_clock;

  std::string op;         // "all_reduce"
  std::string describe;   // "all_reduce #7 (f32, 1024 elements, sum)"
  uint64_t sequence = 0;  // collective sequence number (p2p ops: their own counter)
  bool is_collective = true;
  int peer = -1;  // send/recv: the other rank

  std::mutex mutex;
  std::condition_variable cv;
  bool done = false;
  std::exception_ptr error;
  bool started = false;  // the worker began it (the watchdog times it from here)
  Clock::time_point started_at;
  // Device work (NCCL): set once the work is enqueued on the stream. Returns
  // true when the device finished; throws on an asynchronous error. Must not block.
  std::function<bool()> device_poll;
  std::function<void()> device_wait_on_caller;  // orders the caller's stream after the work

  // Marks the work finished (first call wins). Returns whether this call did it.
  bool finish(std::exception_ptr err) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (done) return false;
      done = true;
      error = std::move(err);
      device_poll = nullptr;
    }
    cv.notify_all();
    return true;
  }
};

}  // namespace dtrain::comm::detail
