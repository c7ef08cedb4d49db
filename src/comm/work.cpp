#include "dtrain/comm/work.h"

#include <thread>

#include "comm/work_state.h"
#include "dtrain/error.h"

namespace dtrain::comm {

Work::Work(std::shared_ptr<detail::WorkState> state) : state_(std::move(state)) {}

namespace {

// Device work completes when its poll says so; poll it here too so a waiter
// does not depend on the watchdog's tick. Returns true when finished.
bool poll_device(detail::WorkState& s) {
  std::function<bool()> poll;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    if (s.done) return true;
    poll = s.device_poll;
  }
  if (!poll) return false;
  try {
    if (poll()) s.finish(nullptr);
  } catch (...) {
    s.finish(std::current_exception());
  }
  std::lock_guard<std::mutex> lock(s.mutex);
  return s.done;
}

void rethrow_if_failed(detail::WorkState& s) {
  std::exception_ptr err;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    err = s.error;
  }
  if (err) std::rethrow_exception(err);
}

}  // namespace

bool Work::is_completed() const {
  if (!state_) return true;
  return poll_device(*state_);
}

void Work::wait() const {
  wait(std::chrono::milliseconds::max());
}

void Work::wait(std::chrono::milliseconds timeout) const {
  if (!state_) return;
  auto& s = *state_;
  const auto start = std::chrono::steady_clock::now();
  const auto deadline =
      timeout == std::chrono::milliseconds::max() ? std::chrono::steady_clock::time_point::max() : start + timeout;
  for (;;) {
    if (poll_device(s)) break;
    std::unique_lock<std::mutex> lock(s.mutex);
    // Short slices: device work needs re-polling; host work is woken by cv,
    // and so is a waiter whose work gets its device poll (the worker
    // notifies), which then polls the device itself instead of waiting for
    // the watchdog's tick.
    const bool had_poll = static_cast<bool>(s.device_poll);
    const auto slice = std::chrono::steady_clock::now() +
                       (had_poll ? std::chrono::microseconds(50) : std::chrono::microseconds(100000));
    s.cv.wait_until(lock, std::min(slice, deadline), [&] { return s.done || (!had_poll && s.device_poll); });
    if (s.done) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      DTRAIN_THROW("Work::wait: ", s.describe, " did not finish within ", timeout.count(),
                   " ms (it continues; the communicator's watchdog fails it after DTRAIN_TIMEOUT_S)");
    }
  }
  rethrow_if_failed(s);
}

std::string Work::op() const {
  return state_ ? state_->op : "none";
}
uint64_t Work::sequence() const {
  return state_ ? state_->sequence : 0;
}

}  // namespace dtrain::comm
