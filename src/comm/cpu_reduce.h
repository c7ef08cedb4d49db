// Internal: elementwise reductions on host buffers for every dtype and
// ReduceOp, in the signature Gloo expects for its reduce callback
// (out, a, b, n: out[i] = a[i] op b[i]; out may alias a or b). bf16 and f16
// are computed in float and rounded once per step.
#pragma once

#include <cstddef>

#include "dtrain/comm/communicator.h"
#include "dtrain/dtype.h"

namespace dtrain::comm {

using ReduceFn = void (*)(void*, const void*, const void*, size_t);

// The function for (dtype, op); avg maps to sum (divide afterwards with
// divide_in_place). Throws for dtypes collectives do not support.
ReduceFn reduce_function(DType dtype, ReduceOp op);
// data[i] /= divisor (integer division for integer dtypes).
void divide_in_place(DType dtype, void* data, size_t n, int divisor);
// Throws unless dtype is one of f32, bf16, f16, i32, i64.
void check_collective_dtype(DType dtype, const char* op);

}  // namespace dtrain::comm
