// Internal: out[c] += sum over rows of in[r, c] for a row-major [rows, cols]
// f32 matrix (the bias gradients of linear_backward and matmul_dgelu_bgrad).
#pragma once

#include <cstdint>

namespace dtrain::cpu {

void column_sum_accumulate(float* out, const float* in, int64_t rows, int64_t cols);

}  // namespace dtrain::cpu
