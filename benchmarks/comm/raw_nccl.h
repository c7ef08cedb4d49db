// The raw NCCL baseline of the comm suite on a GPU: the same collectives on
// the same device buffers, called on a NCCL communicator of the suite's own
// (no dtrain layer, no worker thread, its own stream), so dtrain's rows can
// be printed next to NCCL's (docs/bench.md). The CPU path's counterpart is
// raw Gloo, in comm_suite.cpp. Built with CUDA only.
#pragma once

#include <memory>

#include "comm/collective_specs.h"

namespace dtrain::bench {

class RawNccl {
 public:
  // Collective: every rank of `comm` calls it. Rank 0's ncclUniqueId goes to
  // the others through the job's store (under `store_prefix`).
  RawNccl(comm::Communicator& comm, int device_index, const std::string& store_prefix);
  ~RawNccl();
  RawNccl(const RawNccl&) = delete;
  RawNccl& operator=(const RawNccl&) = delete;

  // Seconds for one call of `spec` on `b` (out of place unless b's buffers
  // alias), issued and waited for by the host: dtrain's per-call latency's
  // counterpart.
  double once(const comm::CollectiveSpec& spec, const comm::CollectiveBuffers& b, DType dtype);

  // nccl-tests' figure: `warmup` calls, then `iters` calls back to back on
  // the stream, timed by CUDA events; seconds per call.
  double back_to_back(const comm::CollectiveSpec& spec, const comm::CollectiveBuffers& b, DType dtype, int warmup,
                      int iters);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dtrain::bench
