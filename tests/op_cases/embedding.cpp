// embedding and embedding_backward (token + position tables): cases, naive
// loops in double, benchmark shapes.
#include <random>

#include "dtrain/ops.h"
#include "op_case.h"

namespace dtrain::op_cases {
namespace {

struct Dims {
  int64_t b, t, v, c, max_t;
};

Vec tokens(const Dims& d, uint32_t seed, int64_t distinct) {
  std::mt19937 rng(seed);
  Vec out(static_cast<size_t>(d.b * d.t));
  for (double& x : out) x = static_cast<double>(rng() % static_cast<uint32_t>(distinct));
  if (out.size() > 4) out[4] = static_cast<double>(d.v - 1);
  return out;
}

// distinct < v: few distinct tokens, so rows repeat (the backward's hard case).
OpCase embedding_case(const Dims& d, uint32_t seed, int64_t distinct, const std::string& skip = "") {
  OpCase c;
  c.op = "embedding";
  c.label = "B " + std::to_string(d.b) + " T " + std::to_string(d.t) + " V " + std::to_string(d.v) + " C " +
            std::to_string(d.c) + " maxT " + std::to_string(d.max_t) + (skip.empty() ? "" : " without " + skip);
  c.args = {given("tokens", {d.b, d.t}, tokens(d, seed, distinct), Role::i32),
            uniform("wte", {d.v, d.c}, seed + 1),
            uniform("wpe", {d.max_t, d.c}, seed + 2),
            written("out", {d.b, d.t, d.c}),
            uniform("dout", {d.b, d.t, d.c}, seed + 3),
            skip == "dwte" ? undefined("dwte") : uniform("dwte", {d.v, d.c}, seed + 4),
            skip == "dwpe" ? undefined("dwpe") : uniform("dwpe", {d.max_t, d.c}, seed + 5)};
  c.forward = [](Bound& b) { ops::embedding(b["out"], b["tokens"], b["wte"], b["wpe"]); };
  c.backward = [](Bound& b) { ops::embedding_backward(b["dwte"], b["dwpe"], b["dout"], b["tokens"]); };
  c.forward_checks = {{"out", 1e-6, 0.0, 1e-2}};
  c.reference = [d](const Values& v) {
    const Vec &tok = v.at("tokens"), &wte = v.at("wte"), &wpe = v.at("wpe");
    Vec out(static_cast<size_t>(d.b * d.t * d.c));
    for (int64_t bt = 0; bt < d.b * d.t; ++bt)
      for (int64_t i = 0; i < d.c; ++i)
        out[bt * d.c + i] = wte[static_cast<int64_t>(tok[bt]) * d.c + i] + wpe[(bt % d.t) * d.c + i];
    return Values{{"out", out}};
  };
  if (skip != "dwte") c.backward_checks.push_back({"dwte", 1e-5, 1e-5, 2e-2});
  if (skip != "dwpe") c.backward_checks.push_back({"dwpe", 1e-5, 1e-5, 2e-2});
  // Every repeated token accumulates: a direct loop (no lost updates).
  c.backward_reference = [d, skip](const Values& v) {
    const Vec &tok = v.at("tokens"), &dout = v.at("dout");
    Values r;
    if (skip != "dwte") r["dwte"] = v.at("dwte");
    if (skip != "dwpe") r["dwpe"] = v.at("dwpe");
    for (int64_t bt = 0; bt < d.b * d.t; ++bt) {
      for (int64_t i = 0; i < d.c; ++i) {
        if (skip != "dwte") r["dwte"][static_cast<int64_t>(tok[bt]) * d.c + i] += dout[bt * d.c + i];
        if (skip != "dwpe") r["dwpe"][(bt % d.t) * d.c + i] += dout[bt * d.c + i];
      }
    }
    return r;
  };
  return c;
}

const bool registered =
    register_op({"embedding",
                 [] {
                   std::vector<OpCase> cases;
                   uint32_t seed = 1;
                   const Dims shapes[] = {{1, 1, 1, 1, 1},      {2, 3, 5, 7, 4},       {3, 17, 11, 13, 17},
                                          {4, 64, 50, 130, 80}, {2, 5, 3, 7, 7},       {3, 7, 2, 5, 9},
                                          {8, 128, 3, 64, 130}, {4, 96, 1000, 67, 98}, {3, 7, 11, 33, 9}};
                   for (const Dims& d : shapes) {
                     cases.push_back(embedding_case(d, seed += 10, d.v));
                     cases.push_back(embedding_case(d, seed, std::min<int64_t>(d.v, 5)));  // many repeats
                     cases.push_back(embedding_case(d, seed, d.v, "dwte"));
                   }
                   return cases;
                 },
                 nullptr});

}  // namespace
}  // namespace dtrain::op_cases
