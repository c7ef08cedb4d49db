// attention and attention_backward (causal, multi-head, qkv packed): cases, a
// naive loop in double, benchmark shapes.
#include <algorithm>
#include <cmath>

#include "dtrain/ops.h"
#include "op_case.h"

namespace dtrain::op_cases {
namespace {

struct Dims {
  int64_t b, t, c, nh;
};

// out [B, T, C] from qkv [B, T, 3C]; lse [B, NH, T].
Values attention_ref(const Vec& qkv, const Dims& d) {
  const int64_t hs = d.c / d.nh, c3 = 3 * d.c;
  Vec out(static_cast<size_t>(d.b * d.t * d.c), 0.0), lse(static_cast<size_t>(d.b * d.nh * d.t), 0.0);
  std::vector<double> s(static_cast<size_t>(d.t));
  for (int64_t b = 0; b < d.b; ++b) {
    for (int64_t h = 0; h < d.nh; ++h) {
      for (int64_t t = 0; t < d.t; ++t) {
        double mx = -INFINITY;
        for (int64_t j = 0; j <= t; ++j) {
          double dot = 0.0;
          for (int64_t i = 0; i < hs; ++i)
            dot += qkv[(b * d.t + t) * c3 + h * hs + i] * qkv[(b * d.t + j) * c3 + d.c + h * hs + i];
          s[j] = dot / std::sqrt(static_cast<double>(hs));
          mx = std::max(mx, s[j]);
        }
        double sum = 0.0;
        for (int64_t j = 0; j <= t; ++j) sum += std::exp(s[j] - mx);
        for (int64_t j = 0; j <= t; ++j) {
          const double p = std::exp(s[j] - mx) / sum;
          for (int64_t i = 0; i < hs; ++i)
            out[(b * d.t + t) * d.c + h * hs + i] += p * qkv[(b * d.t + j) * c3 + 2 * d.c + h * hs + i];
        }
        lse[(b * d.nh + h) * d.t + t] = mx + std::log(sum);
      }
    }
  }
  return {{"out", out}, {"lse", lse}};
}

OpCase attention_case(const Dims& d, uint32_t seed, bool fd) {
  OpCase c;
  c.op = "attention";
  c.label = "B " + std::to_string(d.b) + " T " + std::to_string(d.t) + " C " + std::to_string(d.c) + " NH " +
            std::to_string(d.nh);
  c.args = {uniform("qkv", {d.b, d.t, 3 * d.c}, seed, -2.0, 2.0), written("out", {d.b, d.t, d.c}),
            written("lse", {d.b, d.nh, d.t}, Role::f32), uniform("dout", {d.b, d.t, d.c}, seed + 1),
            uniform("dqkv", {d.b, d.t, 3 * d.c}, seed + 2)};
  const int64_t nh = d.nh;
  c.forward = [nh](Bound& b) { ops::attention(b["out"], b["lse"], b["qkv"], nh); };
  c.backward = [nh](Bound& b) { ops::attention_backward(b["dqkv"], b["dout"], b["qkv"], b["out"], b["lse"], nh); };
  c.forward_checks = {{"out", 1e-5, 1e-5, 1e-2}, {"lse", 1e-5, 1e-5, 1e-2}};
  c.backward_checks = {{"dqkv", 1e-4, 1e-4, 3e-2}};
  c.reference = [d](const Values& v) { return attention_ref(v.at("qkv"), d); };
  if (fd) c.grads = {{"dqkv", "qkv", "out", "dout"}};
  // Causal: half of the T x T products; 2 GEMMs forward, 5 backward, 2 T T hs each.
  const double products = 2.0 * d.b * d.nh * static_cast<double>(d.t) * d.t * (d.c / d.nh) / 2.0;
  c.forward_flops = 2 * products;
  c.backward_flops = 5 * products;
  return c;
}

const bool registered =
    register_op({"attention",
                 [] {
                   std::vector<OpCase> cases;
                   uint32_t seed = 1;
                   const Dims forward_only[] = {{1, 1, 1, 1},   {1, 5, 4, 2},     {2, 7, 6, 3},   {3, 13, 8, 1},
                                                {1, 64, 32, 4}, {2, 17, 24, 4},   {2, 37, 48, 3}, {1, 70, 128, 2},
                                                {2, 1, 64, 2},  {1, 129, 256, 2}, {2, 96, 16, 2}};
                   for (const Dims& d : forward_only) cases.push_back(attention_case(d, seed += 10, false));
                   for (const Dims& d : {Dims{1, 1, 1, 1}, Dims{1, 3, 4, 2}, Dims{2, 5, 6, 3}, Dims{1, 7, 3, 1}})
                     cases.push_back(attention_case(d, seed += 10, true));
                   return cases;
                 },
                 [](const BenchScale& s) {
                   std::vector<OpCase> cases;
                   for (int64_t t : s.attention_seq_lens) {
                     OpCase c = attention_case({s.attention_batch, t, 768, 12}, 1, false);
                     c.cuda_library = "cuBLAS batched GEMMs (DTRAIN_ATTENTION=matmul)";
                     cases.push_back(std::move(c));
                   }
                   return cases;
                 }});

}  // namespace
}  // namespace dtrain::op_cases
