// linear and linear_backward: cases, a naive loop in double, benchmark shapes.
#include "dtrain/ops.h"
#include "op_case.h"

namespace dtrain::op_cases {
namespace {

Vec linear_ref(const Vec& x, const Vec& w, const Vec* bias, int64_t rows, int64_t ic, int64_t oc) {
  Vec out(static_cast<size_t>(rows * oc));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t o = 0; o < oc; ++o) {
      double s = bias ? (*bias)[o] : 0.0;
      for (int64_t i = 0; i < ic; ++i) s += x[r * ic + i] * w[o * ic + i];
      out[r * oc + o] = s;
    }
  }
  return out;
}

// skip: the gradients left undefined, by name ("dx", "dweight", "dx dweight", ...).
OpCase linear_case(const Shape& lead, int64_t ic, int64_t oc, bool with_bias, uint32_t seed, bool fd,
                   const std::string& skip = "") {
  const int64_t rows = shape_numel(lead);
  Shape xs = lead, os = lead;
  xs.push_back(ic);
  os.push_back(oc);
  OpCase c;
  c.op = "linear";
  c.label = shape_str(xs) + " -> " + std::to_string(oc) + (with_bias ? "" : " no bias") +
            (skip.empty() ? "" : " without " + skip);
  const auto skipped = [&](const std::string& name) {
    return (" " + skip + " ").find(" " + name + " ") != std::string::npos;
  };
  auto grad = [&](const std::string& name, const Shape& s, uint32_t sd) {
    return skipped(name) || (name == "dbias" && !with_bias) ? undefined(name) : uniform(name, s, sd);
  };
  c.args = {uniform("x", xs, seed),
            uniform("weight", {oc, ic}, seed + 1),
            with_bias ? uniform("bias", {oc}, seed + 2) : undefined("bias"),
            written("out", os),
            uniform("dout", os, seed + 3),
            grad("dx", xs, seed + 4),
            grad("dweight", {oc, ic}, seed + 5),
            grad("dbias", {oc}, seed + 6)};
  c.forward = [](Bound& b) { ops::linear(b["out"], b["x"], b["weight"], b["bias"]); };
  c.backward = [](Bound& b) {
    ops::linear_backward(b["dx"], b["dweight"], b["dbias"], b["dout"], b["x"], b["weight"]);
  };
  c.forward_checks = {{"out", 1e-5, 1e-5, 1e-2}};
  c.reference = [=](const Values& v) {
    return Values{{"out", linear_ref(v.at("x"), v.at("weight"), with_bias ? &v.at("bias") : nullptr, rows, ic, oc)}};
  };
  const std::pair<const char*, const char*> grads[] = {{"dx", "x"}, {"dweight", "weight"}, {"dbias", "bias"}};
  for (const auto& [g, wrt] : grads) {
    if (skipped(g) || (std::string(g) == "dbias" && !with_bias)) continue;
    c.backward_checks.push_back({g, 1e-5, 1e-5, 1e-2});
    if (fd) c.grads.push_back({g, wrt, "out", "dout"});
  }
  const double flops = 2.0 * rows * ic * oc;
  c.forward_flops = flops;
  c.backward_flops = 2 * flops;
  c.cpu_library = "OpenBLAS sgemm";
  c.cuda_library = "cuBLASLt";
  c.forward_bytes = [=](DType dt) {
    return bytes_of(Role::data, dt, static_cast<double>(rows * ic + oc * ic + rows * oc));
  };
  return c;
}

const bool registered =
    register_op({"linear",
                 [] {
                   std::vector<OpCase> cases;
                   uint32_t seed = 1;
                   struct Shapes {
                     Shape lead;
                     int64_t ic, oc;
                   };
                   const Shapes forward_only[] = {{{1}, 1, 1}, {{3}, 5, 7},       {{2, 3}, 13, 4}, {{2, 5}, 16, 17},
                                                  {{}, 9, 3},  {{1, 67}, 33, 65}, {{2, 7}, 33, 17}};
                   for (const Shapes& s : forward_only)
                     for (bool bias : {true, false})
                       cases.push_back(linear_case(s.lead, s.ic, s.oc, bias, seed += 10, false));
                   const Shapes with_fd[] = {{{1}, 1, 1}, {{2, 3}, 5, 7}, {{11}, 3, 2}, {{1, 2}, 17, 9}};
                   for (const Shapes& s : with_fd) {
                     cases.push_back(linear_case(s.lead, s.ic, s.oc, true, seed += 10, true));
                     for (const char* skip : {"dx", "dweight", "dx dweight"})
                       cases.push_back(linear_case(s.lead, s.ic, s.oc, true, seed, true, skip));
                   }
                   return cases;
                 },
                 nullptr});

}  // namespace
}  // namespace dtrain::op_cases
