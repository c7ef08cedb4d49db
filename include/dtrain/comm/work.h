// Work: the handle an asynchronous collective returns.
//
// A collective runs on its communicator's worker thread (CPU/Gloo) or on the
// communication stream (CUDA/NCCL), so the caller can keep computing and
// wait later. Errors (a peer died, a timeout, a desync) are stored in the
// Work and rethrown by wait(). The tensors a collective uses stay alive until
// it completes, even if the caller drops them.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace dtrain::comm {

namespace detail {
struct WorkState;
}

class Work {
 public:
  Work() = default;  // an already-completed no-op
  explicit Work(std::shared_ptr<detail::WorkState> state);

  // True once the collective finished, successfully or not (never blocks).
  bool is_completed() const;
  // Blocks until the collective finished; rethrows its error as dtrain::Error.
  // The communicator's watchdog bounds this by DTRAIN_TIMEOUT_S.
  void wait() const;
  // As wait(), but throws dtrain::Error if not finished within `timeout`
  // (the collective itself carries on; wait again or let the watchdog end it).
  void wait(std::chrono::milliseconds timeout) const;
  // Operation name ("all_reduce") and its per-communicator sequence number (from 1).
  std::string op() const;
  uint64_t sequence() const;

 private:
  std::shared_ptr<detail::WorkState> state_;
};

}  // namespace dtrain::comm
