// Raw NCCL calls for the comm suite's baseline (raw_nccl.h): one
// communicator, one non-blocking stream and a pair of CUDA events, created
// once per suite run and destroyed with it.
#include "raw_nccl.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>

#include "comm/nccl/nccl_dtype.h"

namespace dtrain::bench {
namespace {

// Throws a dtrain::Error naming the call when NCCL refuses it.
void nccl_ok(ncclResult_t r, const char* what) {
  DTRAIN_CHECK(r == ncclSuccess, "raw NCCL baseline: ", what, " failed: ", ncclGetErrorString(r),
               " (run with NCCL_DEBUG=WARN for NCCL's account; --no-raw-nccl skips the baseline)");
}

void cuda_ok(cudaError_t e, const char* what) {
  DTRAIN_CHECK(e == cudaSuccess, "raw NCCL baseline: ", what, " failed: ", cudaGetErrorString(e));
}

}  // namespace

struct RawNccl::Impl {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  int rank = 0, world = 1;

  // Enqueues one call on `stream` (sizes in elements of the spec's table).
  void issue(const comm::CollectiveSpec& spec, const comm::CollectiveBuffers& b, DType dtype) const {
    const ncclDataType_t t = comm::nccl_dtype(dtype);
    const void* in = b.input.data_ptr();
    void* out = b.output.data_ptr();
    const auto in_n = static_cast<size_t>(b.input.numel());
    const auto out_n = static_cast<size_t>(b.output.numel());
    switch (spec.kind) {
      case comm::Collective::all_reduce:
        nccl_ok(ncclAllReduce(in, out, in_n, t, ncclSum, comm, stream), "ncclAllReduce");
        return;
      case comm::Collective::reduce_scatter:
        nccl_ok(ncclReduceScatter(in, out, out_n, t, ncclSum, comm, stream), "ncclReduceScatter");
        return;
      case comm::Collective::all_gather:
        nccl_ok(ncclAllGather(in, out, in_n, t, comm, stream), "ncclAllGather");
        return;
      case comm::Collective::all_to_all:
        nccl_ok(ncclAlltoAll(in, out, in_n / static_cast<size_t>(world), t, comm, stream), "ncclAlltoAll");
        return;
      case comm::Collective::broadcast:
        nccl_ok(ncclBroadcast(in, out, out_n, t, 0, comm, stream), "ncclBroadcast");
        return;
    }
    DTRAIN_THROW("raw NCCL baseline: unknown collective kind ", static_cast<int>(spec.kind));
  }

  ~Impl() {
    if (start != nullptr) (void)cudaEventDestroy(start);
    if (stop != nullptr) (void)cudaEventDestroy(stop);
    if (stream != nullptr) (void)cudaStreamDestroy(stream);
    if (comm != nullptr) (void)ncclCommDestroy(comm);
  }
};

RawNccl::RawNccl(comm::Communicator& comm, int device_index, const std::string& store_prefix)
    : impl_(std::make_unique<Impl>()) {
  impl_->rank = comm.rank();
  impl_->world = comm.size();
  cuda_ok(cudaSetDevice(device_index), "cudaSetDevice");
  ncclUniqueId id;
  const std::string key = store_prefix + "/unique_id";
  if (impl_->rank == 0) {
    nccl_ok(ncclGetUniqueId(&id), "ncclGetUniqueId");
    comm.store()->set(key, std::string(reinterpret_cast<const char*>(&id), sizeof(id)));
  } else {
    const std::string bytes = comm.store()->get(key);
    DTRAIN_CHECK(bytes.size() == sizeof(id), "raw NCCL baseline: the unique id in the store has ", bytes.size(),
                 " bytes, expected ", sizeof(id));
    std::memcpy(&id, bytes.data(), sizeof(id));
  }
  nccl_ok(ncclCommInitRank(&impl_->comm, impl_->world, id, impl_->rank), "ncclCommInitRank");
  cuda_ok(cudaStreamCreateWithFlags(&impl_->stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  cuda_ok(cudaEventCreate(&impl_->start), "cudaEventCreate");
  cuda_ok(cudaEventCreate(&impl_->stop), "cudaEventCreate");
}

RawNccl::~RawNccl() = default;

double RawNccl::once(const comm::CollectiveSpec& spec, const comm::CollectiveBuffers& b, DType dtype) {
  const auto t0 = std::chrono::steady_clock::now();
  impl_->issue(spec, b, dtype);
  cuda_ok(cudaStreamSynchronize(impl_->stream), "cudaStreamSynchronize after a raw NCCL call");
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double RawNccl::back_to_back(const comm::CollectiveSpec& spec, const comm::CollectiveBuffers& b, DType dtype,
                             int warmup, int iters) {
  for (int i = 0; i < warmup; ++i) impl_->issue(spec, b, dtype);
  cuda_ok(cudaStreamSynchronize(impl_->stream), "cudaStreamSynchronize after the warm-up");
  cuda_ok(cudaEventRecord(impl_->start, impl_->stream), "cudaEventRecord");
  for (int i = 0; i < iters; ++i) impl_->issue(spec, b, dtype);
  cuda_ok(cudaEventRecord(impl_->stop, impl_->stream), "cudaEventRecord");
  cuda_ok(cudaEventSynchronize(impl_->stop), "cudaEventSynchronize after the timed calls");
  float ms = 0;
  cuda_ok(cudaEventElapsedTime(&ms, impl_->start, impl_->stop), "cudaEventElapsedTime");
  return static_cast<double>(ms) * 1e-3 / std::max(1, iters);
}

}  // namespace dtrain::bench
