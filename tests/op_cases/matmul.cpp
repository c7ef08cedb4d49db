// matmul and matmul_backward: cases, a naive loop in double, benchmark shapes.
#include <cmath>

#include "dtrain/ops.h"
#include "op_case.h"

namespace dtrain::op_cases {
namespace {

struct Dims {
  int64_t batch, m, n, k;
  bool batched;
};

Shape with_batch(const Dims& d, Shape s) {
  if (d.batched) s.insert(s.begin(), d.batch);
  return s;
}

// out[z] = alpha * op(a[z]) op(b[z]) + beta * out0[z], in double.
Vec matmul_ref(const Vec& a, const Vec& b, const Vec* out0, const Dims& d, bool ta, bool tb, double alpha,
               double beta) {
  Vec out(static_cast<size_t>(d.batch * d.m * d.n));
  for (int64_t z = 0; z < d.batch; ++z) {
    for (int64_t i = 0; i < d.m; ++i) {
      for (int64_t j = 0; j < d.n; ++j) {
        double s = 0.0;
        for (int64_t p = 0; p < d.k; ++p) {
          const double av = ta ? a[z * d.m * d.k + p * d.m + i] : a[z * d.m * d.k + i * d.k + p];
          const double bv = tb ? b[z * d.k * d.n + j * d.k + p] : b[z * d.k * d.n + p * d.n + j];
          s += av * bv;
        }
        const size_t o = static_cast<size_t>(z * d.m * d.n + i * d.n + j);
        out[o] = alpha * s + (beta != 0.0 ? beta * (*out0)[o] : 0.0);
      }
    }
  }
  return out;
}

OpCase matmul_case(const Dims& d, bool ta, bool tb, float alpha, float beta, uint32_t seed, bool fd,
                   bool skip_da = false) {
  OpCase c;
  c.op = "matmul";
  c.label = (d.batched ? std::to_string(d.batch) + " x " : std::string()) + std::to_string(d.m) + "x" +
            std::to_string(d.n) + "x" + std::to_string(d.k) + (ta ? " a^T" : "") + (tb ? " b^T" : "") + " alpha " +
            std::to_string(alpha) + " beta " + std::to_string(beta) + (skip_da ? " without da" : "");
  const Shape as = with_batch(d, ta ? Shape{d.k, d.m} : Shape{d.m, d.k});
  const Shape bs = with_batch(d, tb ? Shape{d.n, d.k} : Shape{d.k, d.n});
  const Shape os = with_batch(d, {d.m, d.n});
  c.args = {uniform("a", as, seed),
            uniform("b", bs, seed + 1),
            beta == 0.0f ? written("out", os) : uniform("out", os, seed + 2),  // beta = 0 must not read out
            uniform("dout", os, seed + 3),
            skip_da ? undefined("da") : uniform("da", as, seed + 4),
            uniform("db", bs, seed + 5)};
  c.forward = [=](Bound& b) { ops::matmul(b["out"], b["a"], b["b"], ta, tb, alpha, beta); };
  c.backward = [=](Bound& b) { ops::matmul_backward(b["da"], b["db"], b["dout"], b["a"], b["b"], ta, tb); };
  c.forward_checks = {{"out", 1e-5, 1e-5, 1e-2}};
  // The reference of out for the gradient is the plain product (alpha 1, beta 0).
  c.reference = [=](const Values& v) {
    return Values{{"out", matmul_ref(v.at("a"), v.at("b"), &v.at("out"), d, ta, tb, alpha, beta)},
                  {"product", matmul_ref(v.at("a"), v.at("b"), nullptr, d, ta, tb, 1.0, 0.0)}};
  };
  c.backward_checks = {{"db", 1e-5, 1e-5, 1e-2}};
  if (!skip_da) c.backward_checks.insert(c.backward_checks.begin(), {"da", 1e-5, 1e-5, 1e-2});
  if (fd) {
    c.grads = {{"db", "b", "product", "dout"}};
    if (!skip_da) c.grads.insert(c.grads.begin(), {"da", "a", "product", "dout"});
  }
  c.forward_flops = 2.0 * d.batch * d.m * d.n * d.k;
  c.backward_flops = 2 * c.forward_flops;
  c.cpu_library = "OpenBLAS sgemm";
  c.cuda_library = "cuBLASLt";
  c.forward_bytes = [=](DType dt) {
    return bytes_of(Role::data, dt, static_cast<double>(d.batch * (d.m * d.k + d.k * d.n + d.m * d.n)));
  };
  return c;
}

std::vector<OpCase> matmul_cases() {
  std::vector<OpCase> cases;
  uint32_t seed = 1;
  // Forward: every transpose, batched, alpha and beta; the last two split across CPU threads
  // (above 2^25 multiply-adds: by rows when m >= n, by columns when n > m).
  const Dims forward[] = {{1, 1, 1, 1, false}, {1, 7, 13, 5, false},    {1, 33, 17, 64, false}, {3, 5, 11, 3, true},
                          {2, 1, 9, 31, true}, {1, 70, 65, 129, false}, {1, 37, 19, 53, false}, {3, 37, 19, 53, true}};
  const std::pair<float, float> scalings[] = {{1.0f, 0.0f}, {0.5f, 2.0f}, {-1.5f, 1.0f}, {0.5f, 0.7f}};
  for (const Dims& d : forward)
    for (int t = 0; t < 4; ++t)
      for (const auto& [alpha, beta] : scalings)
        cases.push_back(matmul_case(d, t & 1, t & 2, alpha, beta, seed += 10, false));
  for (const Dims& d : {Dims{1, 400, 97, 870, false}, Dims{1, 40, 1000, 850, false}})
    for (int t = 0; t < 4; ++t) {
      OpCase c = matmul_case(d, t & 1, t & 2, 0.75f, 0.5f, seed += 10, false);
      c.on_cuda = false;  // the CPU's threading split; the CUDA cases above cover every transpose
      cases.push_back(std::move(c));
    }
  // Backward by finite differences, and with only db requested.
  const Dims backward[] = {{1, 1, 1, 1, false}, {1, 3, 5, 7, false}, {2, 4, 3, 5, true}, {1, 17, 2, 9, false}};
  for (const Dims& d : backward)
    for (int t = 0; t < 4; ++t)
      for (bool skip_da : {false, true})
        cases.push_back(matmul_case(d, t & 1, t & 2, 1.0f, 1.0f, seed += 10, true, skip_da));
  return cases;
}

// The benchmark's GEMMs: out = a @ b, plain 2-D.
std::vector<OpCase> matmul_bench(const BenchScale& s) {
  std::vector<OpCase> cases;
  for (const auto& [m, n, k] : s.gemm_shapes) {
    OpCase c = matmul_case({1, m, n, k, false}, false, false, 1.0f, 0.0f, 1, false);
    c.label = std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k);
    c.args.resize(3);  // a, b, out: no gradients
    c.backward = nullptr;
    cases.push_back(std::move(c));
  }
  return cases;
}

const bool registered = register_op({"matmul", matmul_cases, matmul_bench});

}  // namespace
}  // namespace dtrain::op_cases
