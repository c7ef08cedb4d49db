// CPU causal multi-head attention.
//
// Forward, per (batch, head, query row t): scores s_j = q_t . k_j / sqrt(hs)
// for j <= t, p = softmax(s), out_t = sum_j p_j v_j, lse_t = log sum_j exp(s_j).
// Only one row of scores exists at a time (a per-thread buffer of T floats), so
// memory is linear in T; lse is what backward needs to rebuild p exactly.
//
// Backward, per (batch, head) -- each owns disjoint slices of dqkv, so the
// parallel loop needs no atomics:
//   p_j = exp(s_j - lse_t), dp_j = dout_t . v_j, D_t = dout_t . out_t
//   ds_j = p_j (dp_j - D_t);  dq_t += ds_j k_j / sqrt(hs);  dk_j += ds_j q_t / sqrt(hs);  dv_j += p_j dout_t
#include <cmath>
#include <vector>

#include "ops/backends.h"

namespace dtrain::cpu {
namespace {

inline float dot(const float* a, const float* b, int64_t n) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

}  // namespace

void attention(Tensor& out, Tensor& lse, const Tensor& qkv, int64_t num_heads) {
  const int64_t batch = qkv.size(0), seq = qkv.size(1), c3 = qkv.size(2), ch = c3 / 3;
  const int64_t hs = ch / num_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  const float* pqkv = qkv.data<float>();
  float* po = out.data<float>();
  float* pl = lse.data<float>();
  const int64_t work = batch * num_heads * seq;
#pragma omp parallel if (work * seq * hs > (1 << 16))
  {
    std::vector<float> scores(static_cast<size_t>(seq));
#pragma omp for schedule(dynamic, 4)
    for (int64_t w = 0; w < work; ++w) {
      const int64_t b = w / (num_heads * seq), h = (w / seq) % num_heads, t = w % seq;
      const float* base = pqkv + b * seq * c3;
      const float* q = base + t * c3 + h * hs;
      float mx = -INFINITY;
      for (int64_t j = 0; j <= t; ++j) {
        const float s = dot(q, base + j * c3 + ch + h * hs, hs) * scale;
        scores[j] = s;
        mx = s > mx ? s : mx;
      }
      float sum = 0.0f;
      for (int64_t j = 0; j <= t; ++j) {
        scores[j] = std::exp(scores[j] - mx);
        sum += scores[j];
      }
      const float inv = 1.0f / sum;
      float* o = po + (b * seq + t) * ch + h * hs;
      for (int64_t d = 0; d < hs; ++d) o[d] = 0.0f;
      for (int64_t j = 0; j <= t; ++j) {
        const float p = scores[j] * inv;
        const float* v = base + j * c3 + 2 * ch + h * hs;
#pragma omp simd
        for (int64_t d = 0; d < hs; ++d) o[d] += p * v[d];
      }
      pl[(b * num_heads + h) * seq + t] = mx + std::log(sum);
    }
  }
}

void attention_backward(Tensor& dqkv, const Tensor& dout, const Tensor& qkv, const Tensor& out, const Tensor& lse,
                        int64_t num_heads) {
  const int64_t batch = qkv.size(0), seq = qkv.size(1), c3 = qkv.size(2), ch = c3 / 3;
  const int64_t hs = ch / num_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  const float* pqkv = qkv.data<float>();
  const float* pdo = dout.data<float>();
  const float* po = out.data<float>();
  const float* pl = lse.data<float>();
  float* pdq = dqkv.data<float>();
  const int64_t work = batch * num_heads;
#pragma omp parallel for schedule(dynamic, 1) if (work * seq * seq * hs > (1 << 16))
  for (int64_t w = 0; w < work; ++w) {
    const int64_t b = w / num_heads, h = w % num_heads;
    const float* base = pqkv + b * seq * c3;
    float* dbase = pdq + b * seq * c3;
    for (int64_t t = 0; t < seq; ++t) {
      const float* q = base + t * c3 + h * hs;
      const float* dout_t = pdo + (b * seq + t) * ch + h * hs;
      const float lse_t = pl[(b * num_heads + h) * seq + t];
      const float big_d = dot(dout_t, po + (b * seq + t) * ch + h * hs, hs);
      float* dq = dbase + t * c3 + h * hs;
      for (int64_t j = 0; j <= t; ++j) {
        const float* k = base + j * c3 + ch + h * hs;
        const float* v = base + j * c3 + 2 * ch + h * hs;
        const float p = std::exp(dot(q, k, hs) * scale - lse_t);
        const float ds = p * (dot(dout_t, v, hs) - big_d) * scale;
        float* dk = dbase + j * c3 + ch + h * hs;
        float* dv = dbase + j * c3 + 2 * ch + h * hs;
#pragma omp simd
        for (int64_t d = 0; d < hs; ++d) {
          dq[d] += ds * k[d];
          dk[d] += ds * q[d];
          dv[d] += p * dout_t[d];
        }
      }
    }
  }
}

}  // namespace dtrain::cpu
