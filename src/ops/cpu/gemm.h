// The one f32 GEMM the CPU backend uses (matmul, linear, their backwards).
#pragma once

#include <cstdint>

namespace dtrain::cpu {

// c[m, n] = alpha * op(a) @ op(b) + beta * c, all row-major and contiguous;
// a is [m, k] ([k, m] when trans_a), b is [k, n] ([n, k] when trans_b).
// With beta == 0, c is not read (it may hold garbage, even NaN).
void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, const float* b,
           float beta, float* c);

}  // namespace dtrain::cpu
