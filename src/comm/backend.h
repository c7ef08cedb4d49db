// Internal: what a transport (Gloo for CPU tensors, NCCL for CUDA tensors)
// provides to the Communicator. The communicator owns ordering, sequence
// numbers, desync checks, timeouts and error reporting; a backend only moves
// bytes. Every member is required; there are no "not supported" stubs (a
// future intra-node shared-memory backend implements the same table).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "dtrain/comm/communicator.h"
#include "dtrain/tensor.h"

namespace dtrain::comm {

enum class OpKind : uint8_t { all_reduce, reduce_scatter, all_gather, broadcast, send, recv, all_to_all, barrier };
const char* op_kind_name(OpKind kind);

// One call, already validated by the communicator.
struct OpArgs {
  OpKind kind = OpKind::barrier;
  ReduceOp reduce = ReduceOp::sum;
  std::vector<Tensor> inputs;  // all_reduce may carry many (coalesced); input[i] may alias output[i]
  std::vector<Tensor> outputs;
  int root = -1;  // broadcast root, or the peer of send/recv
  uint32_t tag = 0;
  // CUDA: the stream the caller's data was produced on (its current stream
  // at issue time, or CommOptions::cuda_stream); the op is ordered after it.
  void* cuda_stream = nullptr;
};

// How a backend reports completion: synchronous backends finish inside run()
// and return an empty Completion; stream-based ones return a non-blocking poll.
struct Completion {
  std::function<bool()> poll;            // true when done; throws on async error
  std::function<void()> wait_on_caller;  // orders the caller's stream after the work
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  // Runs (or enqueues) one operation on the communicator's worker thread.
  // Throws on failure.
  virtual Completion run(const OpArgs& args) = 0;
  // Called from the watchdog when the job failed: unblock or tear down
  // in-flight work where the transport allows it (NCCL: ncclCommAbort).
  virtual void abort() = 0;
};

}  // namespace dtrain::comm
