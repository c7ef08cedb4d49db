// Token + position embedding, forward and backward.
//
// Backward must not lose updates when a token repeats in the batch, and
// should not depend on scheduling. dwpe: one thread per (t, c) sums over the
// batch in order. dwte: the (token, position) pairs are sorted by token with a
// stable radix sort (positions stay ascending within a token), then the first
// position of each run of equal tokens sums its run's rows in that order and
// adds the sum to dwte once. No atomics, bit-identical across runs.
// (This is the one kernel file that includes cub: it costs ~20 s to compile.)
#include <cub/device/device_radix_sort.cuh>

#include "common.cuh"

namespace dtrain::cuda {
namespace {

template <typename T>
__global__ void embedding_forward_kernel(T* out, const int32_t* tokens, const T* wte, const T* wpe, int64_t N,
                                         int64_t T_len, int64_t C, int64_t V) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < N * C; i += stride) {
    const int64_t n = i / C, c = i % C;
    const int32_t tok = tokens[n];
    const int64_t t = n % T_len;
    const bool valid = tok >= 0 && tok < V;  // validated by the op; NaN marks a bypass
    out[i] = store<T>(valid ? load(wte[static_cast<int64_t>(tok) * C + c]) + load(wpe[t * C + c]) : NAN);
  }
}

template <typename T>
__global__ void embedding_backward_wpe_kernel(T* dwpe, const T* dout, int64_t B, int64_t T_len, int64_t C) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < T_len * C; i += stride) {
    float acc = 0.0f;
    for (int64_t b = 0; b < B; ++b) acc += load(dout[b * T_len * C + i]);
    dwpe[i] = store<T>(load(dwpe[i]) + acc);
  }
}

__global__ void iota_kernel(int32_t* out, int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = static_cast<int32_t>(i);
}

// One block per sorted slot; only the first slot of each run of equal tokens works.
template <typename T>
__global__ void embedding_backward_wte_kernel(T* dwte, const T* dout, const int32_t* sorted_tokens,
                                              const int32_t* sorted_positions, int64_t N, int64_t C, int64_t V) {
  const int64_t i = blockIdx.x;
  const int32_t tok = sorted_tokens[i];
  if (i > 0 && sorted_tokens[i - 1] == tok) return;
  if (tok < 0 || tok >= V) return;
  int64_t end = i + 1;
  while (end < N && sorted_tokens[end] == tok) ++end;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    float acc = 0.0f;
    for (int64_t j = i; j < end; ++j) acc += load(dout[static_cast<int64_t>(sorted_positions[j]) * C + c]);
    T* dst = dwte + static_cast<int64_t>(tok) * C + c;
    *dst = store<T>(load(*dst) + acc);
  }
}

}  // namespace

void embedding(Tensor& out, const Tensor& tokens, const Tensor& wte, const Tensor& wpe) {
  const OpContext ctx(out);
  require_same_dtype("embedding", out.dtype(), {&wte, &wpe});
  const int64_t N = tokens.numel(), T_len = tokens.size(-1), C = wte.size(1), V = wte.size(0);
  if (N == 0 || C == 0) return;
  dispatch_float(out.dtype(), "embedding", [&](auto tag) {
    using T = decltype(tag);
    embedding_forward_kernel<T><<<blocks_for(N * C, 256, 16384), 256, 0, ctx.stream()>>>(
        ptr<T>(out), ptr<int32_t>(tokens), ptr<T>(wte), ptr<T>(wpe), N, T_len, C, V);
    DTRAIN_LAUNCH_CHECK();
  });
}

void embedding_backward(Tensor& dwte, Tensor& dwpe, const Tensor& dout, const Tensor& tokens) {
  const OpContext ctx(dout);
  require_same_dtype("embedding_backward", dout.dtype(), {&dwte, &dwpe});
  const int64_t N = tokens.numel(), T_len = tokens.size(-1), B = T_len == 0 ? 0 : N / T_len, C = dout.size(-1);
  if (N == 0 || C == 0) return;
  dispatch_float(dout.dtype(), "embedding_backward", [&](auto tag) {
    using T = decltype(tag);
    if (dwpe.defined()) {
      embedding_backward_wpe_kernel<T>
          <<<blocks_for(T_len * C, 256, 16384), 256, 0, ctx.stream()>>>(ptr<T>(dwpe), ptr<T>(dout), B, T_len, C);
      DTRAIN_LAUNCH_CHECK();
    }
    if (!dwte.defined()) return;
    DTRAIN_CHECK(N <= INT32_MAX, "cuda::embedding_backward: ", N, " tokens exceed the 32-bit sort index");
    const int64_t V = dwte.size(0);
    Tensor keys = ctx.scratch({N}, DType::i32);
    Tensor positions = ctx.scratch({2, N}, DType::i32);
    int32_t* sorted_keys = ptr<int32_t>(keys);
    int32_t* pos_in = ptr<int32_t>(positions);
    int32_t* pos_out = pos_in + N;
    iota_kernel<<<blocks_for(N, 256), 256, 0, ctx.stream()>>>(pos_in, N);
    DTRAIN_LAUNCH_CHECK();
    // All 32 bits are sorted (not just the bits V needs): then equal keys are
    // adjacent even if an invalid token slipped past validation, so no two
    // blocks ever update the same row. The sort is a small part of the step.
    size_t temp_bytes = 0;
    const int end_bit = 32;
    const auto* keys_in = ptr<int32_t>(tokens);
    DTRAIN_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, keys_in, sorted_keys, pos_in, pos_out,
                                                      static_cast<int>(N), 0, end_bit, ctx.stream()));
    Tensor temp = ctx.scratch({static_cast<int64_t>(temp_bytes) + 1}, DType::u8);
    DTRAIN_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.data_ptr(), temp_bytes, keys_in, sorted_keys, pos_in,
                                                      pos_out, static_cast<int>(N), 0, end_bit, ctx.stream()));
    embedding_backward_wte_kernel<T>
        <<<static_cast<unsigned>(N), 128, 0, ctx.stream()>>>(ptr<T>(dwte), ptr<T>(dout), sorted_keys, pos_out, N, C, V);
    DTRAIN_LAUNCH_CHECK();
  });
}

}  // namespace dtrain::cuda
