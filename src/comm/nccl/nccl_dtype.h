// Internal: dtrain's dtypes as NCCL's, shared by the NCCL backend and the
// comm benchmark's raw NCCL baseline (benchmarks/comm/raw_nccl.cpp), so both
// call NCCL with the same types.
#pragma once

#include <nccl.h>

#include "dtrain/dtype.h"
#include "dtrain/error.h"

namespace dtrain::comm {

inline ncclDataType_t nccl_dtype(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return ncclFloat32;
    case DType::bf16:
      return ncclBfloat16;
    case DType::f16:
      return ncclFloat16;
    case DType::i32:
      return ncclInt32;
    case DType::i64:
      return ncclInt64;
    default:
      DTRAIN_THROW("NCCL: dtype ", dtype_name(dtype), " is not supported by collectives");
  }
}

}  // namespace dtrain::comm
