// Internal: one check macro family for CUDA runtime, cuBLAS and NCCL calls.
// Each throws dtrain::Error with the statement, file, line and the library's
// own error string. Include only from CUDA-enabled translation units.
#pragma once

#include <cuda_runtime_api.h>

#include "dtrain/error.h"

#define DTRAIN_CUDA_CHECK(stmt)                                                                 \
  do {                                                                                          \
    const cudaError_t dtrain_err_ = (stmt);                                                     \
    if (dtrain_err_ != cudaSuccess) {                                                           \
      (void)cudaGetLastError();                                                                 \
      ::dtrain::detail::throw_error(#stmt, __FILE__, __LINE__,                                  \
                                    ::dtrain::detail::concat("CUDA error ", cudaGetErrorName(dtrain_err_), ": ", \
                                                             cudaGetErrorString(dtrain_err_))); \
    }                                                                                           \
  } while (0)
