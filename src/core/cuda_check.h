// Internal: one check macro family for CUDA runtime, cuBLAS(Lt) and NCCL calls.
//
// DTRAIN_GPU_CHECK_GEN(stmt, ok, describe) is the one generic form: it
// evaluates stmt once, and when the status is not `ok` hands the statement
// text, file, line and describe(status) to one handler that throws
// dtrain::Error. DTRAIN_CUDA_CHECK and DTRAIN_CUBLAS_CHECK are its
// specialisations; DTRAIN_NCCL_CHECK lives with the NCCL backend in
// comm/nccl/nccl_check.h (it needs nccl.h). Include only from CUDA-enabled translation units.
#pragma once

#include <cublas_api.h>
#include <cuda_runtime_api.h>

#include <string>

#include "dtrain/error.h"

namespace dtrain::detail {
// The one handler: "<library> error <detail> in `<stmt>` (file:line)".
[[noreturn]] void throw_gpu_error(const char* library, const char* stmt, const char* file, int line,
                                  const std::string& detail);
// Library-specific descriptions of a failed status.
std::string describe_cuda_error(cudaError_t status);  // also clears the sticky last error
std::string describe_cublas_error(cublasStatus_t status);
}  // namespace dtrain::detail

#define DTRAIN_GPU_CHECK_GEN(library, stmt, ok, describe)                                              \
  do {                                                                                                 \
    const auto dtrain_status_ = (stmt);                                                                \
    if (dtrain_status_ != (ok)) {                                                                      \
      ::dtrain::detail::throw_gpu_error(library, #stmt, __FILE__, __LINE__, describe(dtrain_status_)); \
    }                                                                                                  \
  } while (0)

#define DTRAIN_CUDA_CHECK(stmt) DTRAIN_GPU_CHECK_GEN("CUDA", stmt, cudaSuccess, ::dtrain::detail::describe_cuda_error)
#define DTRAIN_CUBLAS_CHECK(stmt) \
  DTRAIN_GPU_CHECK_GEN("cuBLAS", stmt, CUBLAS_STATUS_SUCCESS, ::dtrain::detail::describe_cublas_error)
