// NCCL backend for CUDA tensors. Compiled only in CUDA builds; written and
// compiled on machines without a GPU, so it is exercised by the GPU tests
// and the comm benchmark on GPU machines only (see docs/comm.md).
//
// [NCCL streams] Each backend owns one non-blocking communication stream.
// Before an operation it records an event on the caller's compute stream
// (CommOptions::cuda_stream, default the legacy stream) and makes the
// communication stream wait on it, so the collective sees the data the
// compute produced. After it, a "done" event is recorded; Work completion is
// a non-blocking cudaEventQuery plus ncclCommGetAsyncError, so neither the
// worker nor the watchdog ever blocks inside CUDA or NCCL. The communicator
// is created non-blocking (config.blocking = 0) so that initialisation can
// also be bounded by the timeout; on any error or timeout it is aborted.
#ifdef DTRAIN_WITH_CUDA

#include "comm/nccl/nccl_backend.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <atomic>
#include <cstring>
#include <thread>

#include "comm/nccl/nccl_check.h"
#include "comm/nccl/nccl_dtype.h"
#include "core/cuda_check.h"
#include "dtrain/error.h"

// Non-blocking communicators return ncclInProgress from calls whose host
// side is still running; that is not an error (wait_ready polls it).
#define DTRAIN_NCCL_CHECK_ASYNC(stmt) ::dtrain::comm::check_nccl_async((stmt), #stmt, __FILE__, __LINE__)

namespace dtrain::comm {

inline void check_nccl_async(ncclResult_t status, const char* stmt, const char* file, int line) {
  if (status != ncclSuccess && status != ncclInProgress)
    ::dtrain::detail::throw_gpu_error("NCCL", stmt, file, line, ::dtrain::detail::describe_nccl_error(status));
}

namespace {

using Clock = std::chrono::steady_clock;

ncclRedOp_t nccl_op(ReduceOp op, DType dtype) {
  switch (op) {
    case ReduceOp::sum:
      return ncclSum;
    case ReduceOp::product:
      return ncclProd;
    case ReduceOp::max:
      return ncclMax;
    case ReduceOp::min:
      return ncclMin;
    case ReduceOp::avg:
      DTRAIN_CHECK(is_floating(dtype), "NCCL: avg of ", dtype_name(dtype),
                   " CUDA tensors is not available; reduce with sum and divide");
      return ncclAvg;
  }
  DTRAIN_THROW("unknown reduce op");
}

// An event destroyed when the last holder lets go (CUDA defers the release
// until pending work on it finished).
std::shared_ptr<CUevent_st> make_event() {
  cudaEvent_t ev = nullptr;
  DTRAIN_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
  return std::shared_ptr<CUevent_st>(ev, [](cudaEvent_t e) { (void)cudaEventDestroy(e); });
}

class NcclBackend final : public Backend {
 public:
  NcclBackend(const std::shared_ptr<Store>& store, int rank, int size, int device, void* caller_stream,
              std::chrono::milliseconds timeout)
      : rank_(rank),
        size_(size),
        device_(device),
        caller_(static_cast<cudaStream_t>(caller_stream)),
        timeout_(timeout) {
    DTRAIN_CUDA_CHECK(cudaSetDevice(device_));
    ncclUniqueId id;
    if (rank == 0) {
      DTRAIN_NCCL_CHECK_ASYNC(ncclGetUniqueId(&id));
      store->set("unique_id", std::string(reinterpret_cast<const char*>(&id), sizeof(id)));
    } else {
      const std::string bytes = store->get("unique_id");
      DTRAIN_CHECK(bytes.size() == sizeof(id), "NCCL unique id from the store has ", bytes.size(), " bytes, expected ",
                   sizeof(id));
      std::memcpy(&id, bytes.data(), sizeof(id));
    }
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;  // lets us bound initialisation by the timeout
    DTRAIN_NCCL_CHECK_ASYNC(ncclCommInitRankConfig(&comm_, size, id, rank, &config));
    wait_ready("ncclCommInitRankConfig");
    DTRAIN_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  }

  ~NcclBackend() override {
    if (comm_ != nullptr) {
      // Abort is bounded; destroy could wait on a peer that will never come.
      if (aborted_.exchange(true)) {
        // already aborted
      } else if (healthy()) {
        (void)ncclCommDestroy(comm_);
      } else {
        (void)ncclCommAbort(comm_);
      }
    }
    if (stream_ != nullptr) (void)cudaStreamDestroy(stream_);
  }

  const char* name() const override { return "nccl"; }

  Completion run(const OpArgs& a) override {
    DTRAIN_CHECK(!aborted_, "the NCCL communicator was aborted after an earlier failure");
    DTRAIN_CUDA_CHECK(cudaSetDevice(device_));
    // Order after the caller's compute stream.
    auto ready = make_event();
    cudaStream_t caller = a.cuda_stream != nullptr ? static_cast<cudaStream_t>(a.cuda_stream) : caller_;
    DTRAIN_CUDA_CHECK(cudaEventRecord(ready.get(), caller));
    DTRAIN_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready.get(), 0));

    std::vector<Tensor> temps;  // kept alive until the work completes
    DTRAIN_NCCL_CHECK_ASYNC(ncclGroupStart());
    try {
      enqueue(a, temps);
    } catch (...) {
      (void)ncclGroupEnd();
      throw;
    }
    DTRAIN_NCCL_CHECK_ASYNC(ncclGroupEnd());
    wait_ready("ncclGroupEnd");

    auto done = make_event();
    DTRAIN_CUDA_CHECK(cudaEventRecord(done.get(), stream_));
    ncclComm_t comm = comm_;
    Completion c;
    c.poll = [done, comm, temps] {
      const cudaError_t q = cudaEventQuery(done.get());
      if (q == cudaSuccess) return true;
      if (q != cudaErrorNotReady) {
        (void)cudaGetLastError();
        DTRAIN_THROW("CUDA error while waiting for NCCL work: ", cudaGetErrorName(q), ": ", cudaGetErrorString(q));
      }
      ncclResult_t async = ncclSuccess;
      (void)ncclCommGetAsyncError(comm, &async);
      if (async != ncclSuccess && async != ncclInProgress)
        DTRAIN_THROW("NCCL asynchronous error: ", ncclGetErrorString(async), " (", ncclGetLastError(comm), ")");
      return false;
    };
    return c;
  }

  void abort() override {
    if (comm_ != nullptr && !aborted_.exchange(true)) (void)ncclCommAbort(comm_);
  }

 private:
  void enqueue(const OpArgs& a, std::vector<Tensor>& temps) {
    switch (a.kind) {
      case OpKind::all_reduce:
        for (size_t i = 0; i < a.inputs.size(); ++i) {
          const Tensor& in = a.inputs[i];
          const Tensor& out = a.outputs[i];
          if (in.numel() == 0) continue;
          DTRAIN_NCCL_CHECK_ASYNC(ncclAllReduce(in.data_ptr(), out.data_ptr(), static_cast<size_t>(in.numel()),
                                                nccl_dtype(in.dtype()), nccl_op(a.reduce, in.dtype()), comm_, stream_));
        }
        break;
      case OpKind::reduce_scatter: {
        const Tensor& in = a.inputs[0];
        const Tensor& out = a.outputs[0];
        if (out.numel() == 0) break;
        DTRAIN_NCCL_CHECK_ASYNC(ncclReduceScatter(in.data_ptr(), out.data_ptr(), static_cast<size_t>(out.numel()),
                                                  nccl_dtype(in.dtype()), nccl_op(a.reduce, in.dtype()), comm_,
                                                  stream_));
        break;
      }
      case OpKind::all_gather: {
        const Tensor& in = a.inputs[0];
        if (in.numel() == 0) break;
        DTRAIN_NCCL_CHECK_ASYNC(ncclAllGather(in.data_ptr(), a.outputs[0].data_ptr(), static_cast<size_t>(in.numel()),
                                              nccl_dtype(in.dtype()), comm_, stream_));
        break;
      }
      case OpKind::broadcast: {
        const Tensor& t = a.outputs[0];
        if (t.numel() == 0) break;
        DTRAIN_NCCL_CHECK_ASYNC(ncclBroadcast(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()),
                                              nccl_dtype(t.dtype()), a.root, comm_, stream_));
        break;
      }
      case OpKind::all_to_all: {
        Tensor in = a.inputs[0];
        const Tensor& out = a.outputs[0];
        if (in.numel() == 0) break;
        if (in.overlaps(out)) {
          // Sends and receives of one group must not share memory: copy aside on our stream.
          Tensor copy = Tensor::empty(in.shape(), in.dtype(), in.device());
          DTRAIN_CUDA_CHECK(
              cudaMemcpyAsync(copy.data_ptr(), in.data_ptr(), in.nbytes(), cudaMemcpyDeviceToDevice, stream_));
          temps.push_back(copy);
          in = copy;
        }
        const size_t chunk = static_cast<size_t>(in.numel()) / static_cast<size_t>(size_);
        const size_t chunk_bytes = chunk * dtype_size(in.dtype());
        for (int peer = 0; peer < size_; ++peer) {
          DTRAIN_NCCL_CHECK_ASYNC(ncclSend(static_cast<const char*>(in.data_ptr()) + peer * chunk_bytes, chunk,
                                           nccl_dtype(in.dtype()), peer, comm_, stream_));
          DTRAIN_NCCL_CHECK_ASYNC(ncclRecv(static_cast<char*>(out.data_ptr()) + peer * chunk_bytes, chunk,
                                           nccl_dtype(in.dtype()), peer, comm_, stream_));
        }
        break;
      }
      case OpKind::send: {
        const Tensor& t = a.inputs[0];
        if (t.numel() == 0) break;
        DTRAIN_NCCL_CHECK_ASYNC(
            ncclSend(t.data_ptr(), static_cast<size_t>(t.numel()), nccl_dtype(t.dtype()), a.root, comm_, stream_));
        break;
      }
      case OpKind::recv: {
        const Tensor& t = a.outputs[0];
        if (t.numel() == 0) break;
        DTRAIN_NCCL_CHECK_ASYNC(
            ncclRecv(t.data_ptr(), static_cast<size_t>(t.numel()), nccl_dtype(t.dtype()), a.root, comm_, stream_));
        break;
      }
      case OpKind::barrier: {
        // A one-element all-reduce: completes when every rank reached it.
        Tensor scratch = Tensor::zeros({1}, DType::f32, Device::cuda(device_));
        temps.push_back(scratch);
        DTRAIN_NCCL_CHECK_ASYNC(
            ncclAllReduce(scratch.data_ptr(), scratch.data_ptr(), 1, ncclFloat32, ncclSum, comm_, stream_));
        break;
      }
    }
  }

  bool healthy() {
    ncclResult_t async = ncclSuccess;
    return ncclCommGetAsyncError(comm_, &async) == ncclSuccess && async == ncclSuccess;
  }

  // Non-blocking communicators report ncclInProgress until a call finished
  // its host-side part; poll it, bounded by the timeout.
  void wait_ready(const char* what) {
    const auto deadline = Clock::now() + timeout_;
    for (;;) {
      ncclResult_t async = ncclSuccess;
      DTRAIN_NCCL_CHECK_ASYNC(ncclCommGetAsyncError(comm_, &async));
      if (async == ncclSuccess) return;
      if (async != ncclInProgress) {
        abort();
        DTRAIN_THROW(what, " failed on rank ", rank_, " of ", size_, ": NCCL error ", ncclGetErrorString(async), " (",
                     ncclGetLastError(comm_), ")");
      }
      if (Clock::now() > deadline) {
        abort();
        DTRAIN_THROW(what, " did not finish within ", timeout_.count() / 1000.0, " s on rank ", rank_,
                     "; the NCCL communicator was aborted (is every rank running? raise DTRAIN_TIMEOUT_S)");
      }
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }

  int rank_;
  int size_;
  int device_;
  cudaStream_t caller_;
  std::chrono::milliseconds timeout_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  std::atomic<bool> aborted_{false};
};

}  // namespace

std::unique_ptr<Backend> make_nccl_backend(const std::shared_ptr<Store>& store, int rank, int size, int device_index,
                                           void* caller_stream, std::chrono::milliseconds timeout) {
  check_device_available(Device::cuda(device_index));
  return std::make_unique<NcclBackend>(store, rank, size, device_index, caller_stream, timeout);
}

}  // namespace dtrain::comm

#endif  // DTRAIN_WITH_CUDA
