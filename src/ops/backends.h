// Internal: the two op backends and the dispatch helper.
//
// src/ops/<op>.cpp validates the arguments once, then calls cpu::<op> or
// cuda::<op> with the same signature. cuda::<op> exists only in CUDA builds
// (kernels/); DTRAIN_ON_CUDA turns the call into a clear error otherwise.
#pragma once

#include <vector>

#include "dtrain/ops.h"

namespace dtrain::cpu {
#include "ops/backend_ops.inc"
}  // namespace dtrain::cpu

namespace dtrain::cuda {
#include "ops/backend_ops.inc"
}  // namespace dtrain::cuda

#ifdef DTRAIN_WITH_CUDA
#define DTRAIN_ON_CUDA(call) call
#else
#define DTRAIN_ON_CUDA(call)                                                              \
  DTRAIN_THROW(                                                                           \
      "a CUDA tensor reached an op but this dtrain was built without CUDA; rebuild with " \
      "-DDTRAIN_WITH_CUDA=ON")
#endif
