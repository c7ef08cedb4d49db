// CPU column sums (column_sum.h). Each OpenMP thread owns a block of 64
// columns and sums it over every row in row order, so there is no race and
// the result does not depend on the thread count.
#include "ops/cpu/column_sum.h"

namespace dtrain::cpu {

void column_sum_accumulate(float* out, const float* in, int64_t rows, int64_t cols) {
  constexpr int64_t kBlock = 64;
  const int64_t blocks = (cols + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (rows * cols > (1 << 15))
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t j0 = blk * kBlock, j1 = j0 + kBlock < cols ? j0 + kBlock : cols;
    float acc[kBlock] = {};
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = in + r * cols;
#pragma omp simd
      for (int64_t j = j0; j < j1; ++j) acc[j - j0] += row[j];
    }
    for (int64_t j = j0; j < j1; ++j) out[j] += acc[j - j0];
  }
}

}  // namespace dtrain::cpu
