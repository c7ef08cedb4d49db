// Communicator: collectives over a fixed group of ranks.
//
// Contract (as in every MPI-like library): all ranks of a communicator call
// the same collectives in the same order with matching dtype, count, op and
// root. DTRAIN_DEBUG_COLLECTIVES=1 checks that before each collective and
// raises an error naming which ranks called what.
//
// CPU tensors go through Gloo (TCP), CUDA tensors through NCCL (one
// communication stream per communicator, ordered after the caller's stream
// with events). Tensors must be contiguous (all dtrain tensors are) and, for
// one call, on the same device with the same dtype.
//
// Failure handling (always on): every collective carries a sequence number;
// a collective that does not finish within the timeout (DTRAIN_TIMEOUT_S)
// fails on every surviving rank with a message naming the operation, its
// sequence number and the ranks that did not arrive; a dead rank makes the
// others fail within seconds. After a failure the communicator is broken:
// every later call fails with the first error. See docs/comm.md.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dtrain/comm/store.h"
#include "dtrain/comm/work.h"
#include "dtrain/tensor.h"

namespace dtrain::comm {

enum class ReduceOp : uint8_t { sum, avg, max, min, product };
const char* reduce_op_name(ReduceOp op);

struct CommOptions {
  // Bound on every collective and rendezvous step. Default: DTRAIN_TIMEOUT_S (300 s).
  std::chrono::milliseconds timeout = std::chrono::milliseconds(0);  // 0 = from the environment
  // Compare (sequence, op, dtype, count, root) across ranks before every
  // collective. Default: DTRAIN_DEBUG_COLLECTIVES=1.
  int debug_collectives = -1;  // -1 = from the environment, 0 = off, 1 = on
  // Address peers use to reach this rank's Gloo transport. Empty: the local
  // address that routes to the store host (or DTRAIN_GLOO_ADDR if set).
  std::string gloo_address;
  // CUDA only: the stream (a cudaStream_t) NCCL work is ordered after.
  // nullptr: the calling thread's current stream of the tensor's device
  // (dtrain/stream.h), captured when the collective is issued.
  void* cuda_stream = nullptr;
};

class Communicator {
 public:
  // Collective over `store`: every rank 0..size-1 constructs one with the
  // same store (or the same prefix of it). Connects Gloo; NCCL connects on
  // the first CUDA tensor.
  Communicator(std::shared_ptr<Store> store, int rank, int size, CommOptions options = {});
  // This process alone (rank 0 of 1), with no launcher, store server or
  // network: the store is a map in memory and CPU collectives are copies
  // (over one rank every reduction is the identity). Code written for many
  // ranks runs unchanged on one, e.g. the data-parallel engine at world 1.
  // CUDA tensors still go through NCCL (one rank, no peers to reach).
  static std::shared_ptr<Communicator> single_process(CommOptions options = {});
  // Bounded: waits for queued work at most the timeout, never hangs on a dead peer.
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const;
  int size() const;
  std::chrono::milliseconds timeout() const;

  // In place: every rank ends with op over all ranks' `tensor`. avg divides
  // the sum by size() (integer division for i32/i64).
  Work all_reduce(const Tensor& tensor, ReduceOp op = ReduceOp::sum);
  Work all_reduce(const Tensor& input, const Tensor& output, ReduceOp op = ReduceOp::sum);
  // Many tensors in one call (one NCCL group; consecutive on Gloo), one Work.
  Work all_reduce_coalesced(const std::vector<Tensor>& tensors, ReduceOp op = ReduceOp::sum);
  // input.numel() == size() * output.numel(); rank r gets the reduction of
  // chunk r. In place when output is chunk rank() of input (a narrow view).
  Work reduce_scatter(const Tensor& input, const Tensor& output, ReduceOp op = ReduceOp::sum);
  // output.numel() == size() * input.numel(); chunk r of output is rank r's
  // input. In place when input is chunk rank() of output.
  Work all_gather(const Tensor& input, const Tensor& output);
  // In place: every rank ends with root's `tensor`.
  Work broadcast(const Tensor& tensor, int root);
  // Point to point; a send must be matched by a recv with the same tag.
  Work send(const Tensor& tensor, int dst, uint32_t tag = 0);
  Work recv(const Tensor& tensor, int src, uint32_t tag = 0);
  // input and output of equal numel, divisible by size(): chunk j of input
  // goes to rank j, chunk i of output comes from rank i.
  Work all_to_all(const Tensor& input, const Tensor& output);
  Work barrier();

  // Sub-communicators: collective over this communicator. Ranks with the same
  // color form one, ordered by (key, rank). A negative color returns nullptr
  // (this rank joins none).
  std::shared_ptr<Communicator> split(int color, int key);

  // Number of collectives issued so far (the last sequence number).
  uint64_t sequence_number() const;
  // Empty while healthy; the first error once the communicator is broken.
  std::string error() const;
  // The last straggler warning this rank logged ("straggler: rank 2 arrives
  // at collectives 80.1 ms later ..."), empty if none. See docs/comm.md.
  std::string straggler_warning() const;
  const std::shared_ptr<Store>& store() const;

  struct Impl;

 private:
  Communicator(std::shared_ptr<Store> job_store, std::string prefix, int rank, int size, CommOptions options,
               std::vector<int> global_ranks, bool self_transport);
  std::shared_ptr<Impl> impl_;
  friend void announce_exit(Communicator& comm);
};

}  // namespace dtrain::comm
