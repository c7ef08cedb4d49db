// linear_gelu: cases, linear then the tanh GELU in double, no backward (its
// partner, matmul_dgelu_bgrad, is the next layer's input gradient: its own file).
// Output widths that are multiples of 8 take cuBLASLt's fused epilogue on
// CUDA; the others its fallback (the linear and gelu kernels).
#include "dtrain/ops.h"
#include "gelu_reference.h"
#include "op_case.h"

namespace dtrain::op_cases {
namespace {

OpCase linear_gelu_case(const Shape& lead, int64_t ic, int64_t oc, bool with_bias, uint32_t seed) {
  const int64_t rows = shape_numel(lead);
  Shape xs = lead, os = lead;
  xs.push_back(ic);
  os.push_back(oc);
  OpCase c;
  c.op = "linear_gelu";
  c.label = shape_str(xs) + " -> " + std::to_string(oc) + (with_bias ? "" : " no bias");
  // Inputs in [-2, 2) so pre spans GELU's curved part, not only its linear tails.
  c.args = {uniform("x", xs, seed, -2.0, 2.0), uniform("weight", {oc, ic}, seed + 1),
            with_bias ? uniform("bias", {oc}, seed + 2) : undefined("bias"), written("out", os), written("pre", os)};
  c.forward = [](Bound& b) { ops::linear_gelu(b["out"], b["pre"], b["x"], b["weight"], b["bias"]); };
  // CPU-vs-CUDA for out at 1e-4: cuBLASLt's GELU epilogue need not use the same tanh as gelu.cu.
  c.forward_checks = {{"pre", 1e-5, 1e-5, 1e-2}, {"out", 1e-5, 1e-4, 1e-2}};
  c.reference = [=](const Values& v) {
    const Vec &x = v.at("x"), &w = v.at("weight");
    Vec pre(static_cast<size_t>(rows * oc)), out(pre.size());
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t o = 0; o < oc; ++o) {
        double s = with_bias ? v.at("bias")[o] : 0.0;
        for (int64_t i = 0; i < ic; ++i) s += x[r * ic + i] * w[o * ic + i];
        pre[r * oc + o] = s;
        out[r * oc + o] = gelu_ref(s);
      }
    }
    return Values{{"pre", pre}, {"out", out}};
  };
  c.forward_flops = 2.0 * rows * ic * oc;
  c.cpu_library = "OpenBLAS sgemm";
  c.cuda_library = "cuBLASLt";
  c.forward_bytes = [=](DType dt) {
    return bytes_of(Role::data, dt, static_cast<double>(rows * ic + oc * ic + oc + 2 * rows * oc));
  };
  return c;
}

const bool registered =
    register_op({"linear_gelu",
                 [] {
                   std::vector<OpCase> cases;
                   uint32_t seed = 7;
                   struct Shapes {
                     Shape lead;
                     int64_t ic, oc;
                   };
                   const Shapes shapes[] = {{{1}, 1, 1},       {{3}, 5, 7},      {{2, 3}, 13, 16}, {{2, 5}, 16, 8},
                                            {{1, 67}, 33, 64}, {{2, 7}, 32, 17}, {{}, 9, 24}};
                   for (const Shapes& s : shapes)
                     for (bool bias : {true, false})
                       cases.push_back(linear_gelu_case(s.lead, s.ic, s.oc, bias, seed += 10));
                   return cases;
                 },
                 [](const BenchScale& s) {  // a GPT MLP's fc: width -> 4 x width
                   const int64_t hidden = 4 * s.channels;
                   return std::vector<OpCase>{linear_gelu_case({s.elements / hidden}, s.channels, hidden, true, 1)};
                 }});

}  // namespace
}  // namespace dtrain::op_cases
