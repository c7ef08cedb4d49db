// Internal: deterministic column sums of a row-major [rows, cols] matrix,
// accumulated into a vector (out[c] += sum_r in[r, c]), f32 accumulation.
//
// Two passes, no atomics, so results do not depend on scheduling: pass 1
// gives each (row chunk, column) a thread that sums its chunk into an f32
// partial (threads of a warp read adjacent columns: coalesced); pass 2 sums
// the partials of each column in chunk order and adds them to out.
#pragma once

#include "common.cuh"

namespace dtrain::cuda {

template <typename T>
__global__ void column_sum_partial_kernel(float* partial, const T* in, int64_t rows, int64_t cols,
                                          int64_t rows_per_chunk) {
  const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (c >= cols) return;
  const int64_t r0 = blockIdx.y * rows_per_chunk;
  const int64_t r1 = min(rows, r0 + rows_per_chunk);
  float acc = 0.0f;
  for (int64_t r = r0; r < r1; ++r) acc += load(in[r * cols + c]);
  partial[blockIdx.y * cols + c] = acc;
}

template <typename T>
__global__ void column_sum_finish_kernel(T* out, const float* partial, int64_t chunks, int64_t cols) {
  const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (c >= cols) return;
  float acc = 0.0f;
  for (int64_t i = 0; i < chunks; ++i) acc += partial[i * cols + c];
  out[c] = store<T>(load(out[c]) + acc);
}

// out[c] += sum over rows of in[r, c] (queued on ctx's stream).
template <typename T>
void column_sum_accumulate(const OpContext& ctx, T* out, const T* in, int64_t rows, int64_t cols) {
  if (rows == 0 || cols == 0) return;
  constexpr int kThreads = 256;
  // Enough chunks to fill the GPU several times over, each at least 32 rows.
  int64_t chunks = (rows + 31) / 32;
  if (chunks > 1024) chunks = 1024;
  const int64_t col_blocks = (cols + kThreads - 1) / kThreads;
  while (chunks > 1 && chunks * col_blocks > 8192) chunks /= 2;
  const int64_t rows_per_chunk = (rows + chunks - 1) / chunks;
  chunks = (rows + rows_per_chunk - 1) / rows_per_chunk;
  Tensor partial = ctx.scratch({chunks, cols});
  const dim3 grid(static_cast<unsigned>(col_blocks), static_cast<unsigned>(chunks));
  column_sum_partial_kernel<T>
      <<<grid, kThreads, 0, ctx.stream()>>>(ptr<float>(partial), in, rows, cols, rows_per_chunk);
  DTRAIN_LAUNCH_CHECK();
  column_sum_finish_kernel<T>
      <<<static_cast<unsigned>(col_blocks), kThreads, 0, ctx.stream()>>>(out, ptr<float>(partial), chunks, cols);
  DTRAIN_LAUNCH_CHECK();
}

}  // namespace dtrain::cuda
