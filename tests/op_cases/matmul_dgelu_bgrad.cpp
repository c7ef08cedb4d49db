// matmul_dgelu_bgrad: cases checked by finite differences. The case's forward
// is the unfused layer pair the op differentiates, y = gelu(pre + probe) @ W^T
// (probe: a zero bias, there only so that finite differences can take
// d/d(bias) = column sums of dpre); its backward is the op:
//   dpre = d sum(dout * y) / d pre (written), dbias = start + d sum(dout * y) / d probe.
// Hidden widths that are multiples of 8 take cuBLASLt's fused epilogue on
// CUDA; the others its fallback (GEMM, gelu_backward, column sums).
#include "dtrain/ops.h"
#include "gelu_reference.h"
#include "op_case.h"

namespace dtrain::op_cases {
namespace {

OpCase dgelu_case(const Shape& lead, int64_t channels, int64_t hidden, bool with_dbias, uint32_t seed) {
  const int64_t rows = shape_numel(lead);
  Shape hs = lead, cs = lead;
  hs.push_back(hidden);
  cs.push_back(channels);
  OpCase c;
  c.op = "matmul_dgelu_bgrad";
  c.label = shape_str(cs) + " x [" + std::to_string(channels) + ", " + std::to_string(hidden) + "]" +
            (with_dbias ? "" : " without dbias");
  c.args = {uniform("pre", hs, seed, -3.0, 3.0),
            uniform("weight", {channels, hidden}, seed + 1),
            zeros("probe", {hidden}),
            written("gelu", hs),
            written("y", cs),
            uniform("dout", cs, seed + 2),
            written("dpre", hs),
            with_dbias ? uniform("dbias", {hidden}, seed + 3) : undefined("dbias")};
  c.forward = [](Bound& b) {
    ops::gelu(b["gelu"], b["pre"]);
    ops::linear(b["y"], b["gelu"], b["weight"], Tensor());
  };
  c.backward = [](Bound& b) { ops::matmul_dgelu_bgrad(b["dpre"], b["dbias"], b["dout"], b["weight"], b["pre"]); };
  c.forward_checks = {{"y", 1e-5, 1e-5, 1e-2}};
  c.reference = [=](const Values& v) {
    const Vec &pre = v.at("pre"), &w = v.at("weight"), &probe = v.at("probe");
    Vec g(pre.size()), y(static_cast<size_t>(rows * channels));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t h = 0; h < hidden; ++h) g[r * hidden + h] = gelu_ref(pre[r * hidden + h] + probe[h]);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t o = 0; o < channels; ++o) {
        double s = 0.0;
        for (int64_t h = 0; h < hidden; ++h) s += g[r * hidden + h] * w[o * hidden + h];
        y[r * channels + o] = s;
      }
    }
    return Values{{"y", y}};
  };
  // CPU-vs-CUDA at 1e-4 in f32: cuBLASLt's GELU-gradient epilogue need not use gelu.cu's tanh.
  c.backward_checks = {{"dpre", 1e-5, 1e-4, 1e-2}};
  c.grads = {{"dpre", "pre", "y", "dout"}};
  if (with_dbias) {
    c.backward_checks.push_back({"dbias", 1e-5, 1e-4, 1e-2});
    c.grads.push_back({"dbias", "probe", "y", "dout"});
  }
  const double flops = 2.0 * rows * channels * hidden;
  c.forward_flops = flops;
  c.backward_flops = flops;
  c.cpu_library = "OpenBLAS sgemm";
  c.cuda_library = "cuBLASLt";
  c.backward_bytes = [=](DType dt) {
    return bytes_of(Role::data, dt, static_cast<double>(rows * channels + channels * hidden + 2 * rows * hidden));
  };
  return c;
}

const bool registered = register_op(
    {"matmul_dgelu_bgrad",
     [] {
       std::vector<OpCase> cases;
       uint32_t seed = 3;
       struct Shapes {
         Shape lead;
         int64_t channels, hidden;
       };
       const Shapes shapes[] = {{{1}, 1, 1}, {{2, 3}, 5, 16}, {{7}, 3, 8}, {{2, 2}, 4, 13}, {{5}, 9, 24}, {{}, 6, 8}};
       for (const Shapes& s : shapes)
         for (bool dbias : {true, false}) cases.push_back(dgelu_case(s.lead, s.channels, s.hidden, dbias, seed += 10));
       return cases;
     },
     [](const BenchScale& s) {  // a GPT MLP's proj input: 4 x width -> width
       const int64_t hidden = 4 * s.channels;
       return std::vector<OpCase>{dgelu_case({s.elements / hidden}, s.channels, hidden, true, 1)};
     }});

}  // namespace
}  // namespace dtrain::op_cases
