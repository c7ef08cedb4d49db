// Test references for attention with either mask. ops::attention (the CPU
// reference of the suite) is causal only; the tensor-core kernels also take
// a full mask, which these double-precision loops check (CPU tile emulation
// in tests/ops, the GPU kernels in tests/gpu). Also the output gradient with
// whole rows of zeros that both tests feed to the backward.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "dtrain/ops.h"
#include "dtrain/tensor.h"
#include "test_support.h"

namespace dtrain::testing {

// Naive attention in double on CPU f32 tensors: out [B, T, C] and lse
// [B, NH, T] written, dqkv [B, T, 3C] added into (as ops::attention_backward).
inline void naive_attention(Tensor& out, Tensor& lse, Tensor& dqkv, const Tensor& qkv, const Tensor& dout,
                            int64_t num_heads, bool causal) {
  const int64_t B = qkv.size(0), T = qkv.size(1), C = qkv.size(2) / 3, hs = C / num_heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hs));
  const float* x = qkv.data<float>();
  const float* g = dout.data<float>();
  auto sz = [](int64_t i) { return static_cast<size_t>(i); };
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < num_heads; ++h) {
      auto q = [&](int64_t i, int64_t c) { return static_cast<double>(x[(b * T + i) * 3 * C + h * hs + c]); };
      auto k = [&](int64_t j, int64_t c) { return static_cast<double>(x[(b * T + j) * 3 * C + C + h * hs + c]); };
      auto v = [&](int64_t j, int64_t c) { return static_cast<double>(x[(b * T + j) * 3 * C + 2 * C + h * hs + c]); };
      auto go = [&](int64_t i, int64_t c) { return static_cast<double>(g[(b * T + i) * C + h * hs + c]); };
      float* pg = dqkv.data<float>() + b * T * 3 * C + h * hs;
      for (int64_t i = 0; i < T; ++i) {
        const int64_t n = causal ? i + 1 : T;  // keys 0..n-1 are visible
        std::vector<double> p(sz(n));
        double mx = -INFINITY, sum = 0.0;
        for (int64_t j = 0; j < n; ++j) {
          double s = 0.0;
          for (int64_t c = 0; c < hs; ++c) s += q(i, c) * k(j, c);
          p[sz(j)] = s * scale;
          mx = std::max(mx, p[sz(j)]);
        }
        for (int64_t j = 0; j < n; ++j) sum += std::exp(p[sz(j)] - mx);
        std::vector<double> o(sz(hs), 0.0);
        for (int64_t j = 0; j < n; ++j) {
          p[sz(j)] = std::exp(p[sz(j)] - mx) / sum;
          for (int64_t c = 0; c < hs; ++c) o[sz(c)] += p[sz(j)] * v(j, c);
        }
        double dot = 0.0;
        for (int64_t c = 0; c < hs; ++c) {
          out.data<float>()[(b * T + i) * C + h * hs + c] = static_cast<float>(o[sz(c)]);
          dot += go(i, c) * o[sz(c)];
        }
        lse.data<float>()[(b * num_heads + h) * T + i] = static_cast<float>(mx + std::log(sum));
        for (int64_t j = 0; j < n; ++j) {
          double dp = 0.0;
          for (int64_t c = 0; c < hs; ++c) dp += go(i, c) * v(j, c);
          const double ds = p[sz(j)] * (dp - dot) * scale;
          for (int64_t c = 0; c < hs; ++c) {
            pg[i * 3 * C + c] += static_cast<float>(ds * k(j, c));
            pg[j * 3 * C + C + c] += static_cast<float>(ds * q(i, c));
            pg[j * 3 * C + 2 * C + c] += static_cast<float>(p[sz(j)] * go(i, c));
          }
        }
      }
    }
  }
}

// The reference of one case: the suite's CPU op (ops::attention) for the
// causal mask, naive_attention for the full one. dqkv is added into.
inline void reference_attention(Tensor& out, Tensor& lse, Tensor& dqkv, const Tensor& qkv, const Tensor& dout,
                                int64_t num_heads, bool causal) {
  if (causal) {
    ops::attention(out, lse, qkv, num_heads);
    ops::attention_backward(dqkv, dout, qkv, out, lse, num_heads);
  } else {
    naive_attention(out, lse, dqkv, qkv, dout, num_heads, false);
  }
}

// A random output gradient [B, T, C] whose rows 3, 8, 13, ... and last row are all zero.
inline Tensor dout_with_zero_rows(const Shape& btc, uint32_t seed) {
  Tensor t = random_tensor(btc, seed);
  const int64_t B = btc[0], T = btc[1], C = btc[2];
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t i = 0; i < T; ++i) {
      if (i % 5 != 3 && i != T - 1) continue;
      for (int64_t c = 0; c < C; ++c) t.data<float>()[(b * T + i) * C + c] = 0.0f;
    }
  }
  return t;
}

}  // namespace dtrain::testing
