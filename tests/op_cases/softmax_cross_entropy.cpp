// softmax_cross_entropy (losses and the fused gradient): cases, a naive loop
// in double, benchmark shapes.
#include <algorithm>
#include <cmath>
#include <random>
#include <utility>

#include "dtrain/ops.h"
#include "op_case.h"

namespace dtrain::op_cases {
namespace {

constexpr int32_t kIgnore = -100;

// The row's max and sum of exp(x - max).
std::pair<double, double> row_max_and_sum(const double* row, int64_t v) {
  double mx = -INFINITY, sum = 0.0;
  for (int64_t i = 0; i < v; ++i) mx = std::max(mx, row[i]);
  for (int64_t i = 0; i < v; ++i) sum += std::exp(row[i] - mx);
  return {mx, sum};
}

Vec losses_ref(const Vec& logits, const Vec& targets, int64_t v) {
  Vec out(targets.size(), 0.0);
  for (size_t r = 0; r < targets.size(); ++r) {
    if (static_cast<int32_t>(targets[r]) == kIgnore) continue;
    const auto [mx, sum] = row_max_and_sum(logits.data() + r * v, v);
    out[r] = std::log(sum) + mx - logits[r * v + static_cast<int64_t>(targets[r])];
  }
  return out;
}

// (softmax - onehot) * grad_scale, 0 on ignored rows.
Vec dlogits_ref(const Vec& logits, const Vec& targets, int64_t v, double grad_scale) {
  Vec ref(logits.size(), 0.0);
  for (size_t r = 0; r < targets.size(); ++r) {
    if (static_cast<int32_t>(targets[r]) == kIgnore) continue;
    const auto [mx, sum] = row_max_and_sum(logits.data() + r * v, v);
    for (int64_t i = 0; i < v; ++i) ref[r * v + i] = std::exp(logits[r * v + i] - mx) / sum * grad_scale;
    ref[r * v + static_cast<int64_t>(targets[r])] -= grad_scale;
  }
  return ref;
}

Vec make_targets(int64_t n, int64_t v, uint32_t seed, bool ignore_some) {
  std::mt19937 rng(seed);
  Vec t(static_cast<size_t>(n));
  for (double& x : t) x = static_cast<double>(rng() % static_cast<uint32_t>(v));
  if (ignore_some && n > 2) t[1] = kIgnore;
  if (ignore_some && n > 12) t[12] = kIgnore;
  if (n > 1) t[0] = static_cast<double>(v - 1);
  return t;
}

// with_grad: dlogits written (else left out); in_place: dlogits is logits itself.
OpCase cross_entropy_case(int64_t n, int64_t v, float grad_scale, uint32_t seed, bool with_grad, bool in_place) {
  OpCase c;
  c.op = "softmax_cross_entropy";
  c.label = std::to_string(n) + " rows of " + std::to_string(v) + " grad_scale " + std::to_string(grad_scale) +
            (with_grad ? "" : " losses only") + (in_place ? " in place" : "");
  c.args = {uniform("logits", {n, v}, seed, -4.0, 4.0),
            given("targets", {n}, make_targets(n, v, seed + 1, true), Role::i32), written("losses", {n}, Role::f32),
            host("loss_weight", Vec(static_cast<size_t>(n), grad_scale))};
  c.args.push_back(!with_grad ? undefined("dlogits")
                   : in_place ? alias("dlogits", "logits")
                              : written("dlogits", {n, v}));
  c.forward = [grad_scale](Bound& b) {
    ops::softmax_cross_entropy(b["losses"], b["dlogits"], b["logits"], b["targets"], grad_scale, kIgnore);
  };
  c.forward_checks = {{"losses", 1e-5, 1e-5, 1e-5}};
  c.reference = [v](const Values& x) { return Values{{"losses", losses_ref(x.at("logits"), x.at("targets"), v)}}; };
  if (with_grad) {
    // Relative to the largest term across backends (floor 0): every term is
    // small, so an absolute tolerance would accept an all-zero gradient.
    c.backward_checks = {{"dlogits", n * v <= 200 ? 1e-5 : 1e-6, 1e-5, 1e-2, 0.0, 1.0}};
    if (n * v <= 200 && !in_place) {
      c.grads = {{"dlogits", "logits", "losses", "loss_weight"}};
    } else {
      c.backward_reference = [v, grad_scale](const Values& x) {
        return Values{{"dlogits", dlogits_ref(x.at("logits"), x.at("targets"), v, grad_scale)}};
      };
    }
  }
  // logits read, dlogits written (losses and targets negligible).
  c.forward_bytes = [n, v, with_grad](DType dt) {
    return (with_grad ? 2 : 1) * bytes_of(Role::data, dt, static_cast<double>(n * v));
  };
  return c;
}

const bool registered =
    register_op({"softmax_cross_entropy",
                 [] {
                   std::vector<OpCase> cases;
                   uint32_t seed = 1;
                   const std::pair<int64_t, int64_t> shapes[] = {{1, 1},    {1, 2},     {3, 5},     {7, 17},
                                                                 {4, 1000}, {13, 1001}, {13, 1024}, {2, 50257}};
                   for (const auto& [n, v] : shapes)
                     for (float grad_scale : {1.0f, 0.25f, 1.0f / 11.0f}) {
                       seed += 10;
                       cases.push_back(cross_entropy_case(n, v, grad_scale, seed, true, false));
                       cases.push_back(cross_entropy_case(n, v, grad_scale, seed, true, true));
                       cases.push_back(cross_entropy_case(n, v, grad_scale, seed, false, false));
                     }
                   return cases;
                 },
                 [](const BenchScale& s) {
                   return std::vector<OpCase>{
                       cross_entropy_case(std::max<int64_t>(1, s.elements / s.vocab), s.vocab, 1.0f, 1, true, false)};
                 }});

}  // namespace
}  // namespace dtrain::op_cases
