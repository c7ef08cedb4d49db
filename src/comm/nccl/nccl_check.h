// Internal: DTRAIN_NCCL_CHECK, the NCCL member of the check macro family
// (core/cuda_check.h), kept with the NCCL backend so that core never needs
// nccl.h. The message names the NCCL version the process loaded, since NCCL
// errors often depend on it (nccl_check.cpp).
#pragma once

#include <nccl.h>

#include "core/cuda_check.h"

namespace dtrain::detail {
std::string describe_nccl_error(ncclResult_t status);
}  // namespace dtrain::detail

#define DTRAIN_NCCL_CHECK(stmt) DTRAIN_GPU_CHECK_GEN("NCCL", stmt, ncclSuccess, ::dtrain::detail::describe_nccl_error)
