// Internal: the NCCL backend (CUDA tensors). Compiled only when
// DTRAIN_WITH_CUDA is defined; make_nccl_backend is the only entry point.
#pragma once

#include <chrono>
#include <memory>

#include "comm/backend.h"
#include "dtrain/comm/store.h"

namespace dtrain::comm {

// Creates the NCCL communicator for `device_index` (rank 0 makes the unique
// id and publishes it through `store`). `caller_stream` (a cudaStream_t,
// nullptr = legacy default stream) is the compute stream work is ordered after.
std::unique_ptr<Backend> make_nccl_backend(const std::shared_ptr<Store>& store, int rank, int size, int device_index,
                                           void* caller_stream, std::chrono::milliseconds timeout);

}  // namespace dtrain::comm
