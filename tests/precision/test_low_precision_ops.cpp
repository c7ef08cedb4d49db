// Every op in bf16 and f16 on the CPU against the same op in f32.
//
// Each case runs the op three times:
//   reference: f32, on the original values;
//   rounded:   f32, on the values rounded to the low dtype (and back);
//   low:       in the low dtype (the CPU converts around its f32 kernels).
// Two checks per output:
//   1. exactness of the adapter: `low` is `rounded` rounded once to the low
//      dtype, bit for bit. Backward ops ADD into gradients that already hold
//      values, so this also proves a bf16 gradient accumulates as
//      round(float(g) + update), not as a sum of rounded pieces;
//   2. accuracy of computing in the low dtype: `low` against `reference`
//      within tolerance_for(dt, -, bf16_tol) (tests/compare.h, NaN-aware).
//      The bf16 tolerances below allow for the input roundings (one unit u
//      per input, summed over the reduction) and the output rounding: at
//      most ~4u = 1.6e-2 for elementwise ops, more for reductions over K
//      terms of mixed signs and for the exp/log of the softmax.
#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "check_close.h"
#include "dtrain/ops.h"
#include "test_support.h"

using namespace dtrain;
using testing::cast_to;
using testing::tolerance_for;

namespace {

Tensor random_tensor(const Shape& shape, uint32_t seed, double scale = 1.0) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> dist(-scale, scale);
  Tensor t = Tensor::empty(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.set_item(i, dist(rng));
  return t;
}

// Bits of a 16-bit tensor, for exact comparison.
std::vector<uint16_t> bits16(const Tensor& t) {
  const auto* p = static_cast<const uint16_t*>(t.data_ptr());
  return {p, p + t.numel()};
}

// One op's tensors. `args` are in the op's argument order; the op lambda reads
// them by index. Float tensors marked `stays_f32` keep f32 in every run
// (layernorm statistics, attention's lse, the losses); integer tensors are
// shared.
struct OpCase {
  std::string name;
  double bf16_tol = 0.0;
  std::vector<Tensor> args;       // f32 originals (outputs hold their starting values)
  std::vector<size_t> outputs;    // indices of the outputs to compare
  std::vector<size_t> stays_f32;  // indices of tensors that are f32 by contract
  std::function<void(std::vector<Tensor>&)> run;
  double floor = 1.0;  // compare()'s floor
};

bool contains(const std::vector<size_t>& v, size_t i) {
  for (size_t x : v)
    if (x == i) return true;
  return false;
}

std::vector<Tensor> in_dtype(const OpCase& c, DType dt) {
  std::vector<Tensor> out;
  for (size_t i = 0; i < c.args.size(); ++i) {
    const Tensor& t = c.args[i];
    if (!t.defined()) {
      out.emplace_back();
    } else if (t.dtype() != DType::f32 || contains(c.stays_f32, i)) {
      out.push_back(t.clone());
    } else {
      out.push_back(cast_to(t, dt));
    }
  }
  return out;
}

std::vector<Tensor> widened(const std::vector<Tensor>& ts) {
  std::vector<Tensor> out;
  for (const Tensor& t : ts) out.push_back(t.defined() && is_floating(t.dtype()) ? cast_to(t, DType::f32) : t);
  return out;
}

void check_case(const OpCase& c, DType dt) {
  INFO(c.name << " in " << dtype_name(dt));
  std::vector<Tensor> reference;
  for (const Tensor& t : c.args) reference.push_back(t.defined() ? t.clone() : Tensor());
  std::vector<Tensor> low = in_dtype(c, dt);
  std::vector<Tensor> rounded = widened(low);  // taken before the low run writes its outputs
  c.run(reference);
  c.run(rounded);
  c.run(low);
  for (size_t i : c.outputs) {
    INFO("output " << i);
    if (low[i].dtype() == DType::f32) {
      CHECK(low[i].to_vector() == rounded[i].to_vector());
    } else {
      CHECK(bits16(low[i]) == bits16(cast_to(rounded[i], dt)));
    }
    CHECK_CLOSE(low[i], reference[i], tolerance_for(dt, 0.0, c.bf16_tol), c.floor);
  }
}

std::vector<OpCase> op_cases() {
  const int64_t B = 2, T = 5, C = 8, NH = 2, V = 11, M = 6, K = 12, N = 7;
  std::vector<OpCase> cases;
  // The matmul family reduces over K = 12 terms of inputs in [-1, 1].
  cases.push_back({"matmul",
                   2e-2,
                   {random_tensor({M, N}, 1), random_tensor({M, K}, 2), random_tensor({K, N}, 3)},
                   {0},
                   {},
                   [](std::vector<Tensor>& a) { ops::matmul(a[0], a[1], a[2], false, false, 0.5f, 1.0f); }});
  cases.push_back({"matmul transposed, batched",
                   2e-2,
                   {random_tensor({2, M, N}, 4), random_tensor({2, K, M}, 5), random_tensor({2, N, K}, 6)},
                   {0},
                   {},
                   [](std::vector<Tensor>& a) { ops::matmul(a[0], a[1], a[2], true, true); }});
  cases.push_back({"matmul_backward accumulates",
                   2e-2,
                   {random_tensor({M, K}, 7), random_tensor({K, N}, 8), random_tensor({M, N}, 9),
                    random_tensor({M, K}, 10), random_tensor({K, N}, 11)},
                   {0, 1},
                   {},
                   [](std::vector<Tensor>& a) { ops::matmul_backward(a[0], a[1], a[2], a[3], a[4]); }});
  cases.push_back(
      {"linear",
       2e-2,
       {random_tensor({B, T, N}, 12), random_tensor({B, T, K}, 13), random_tensor({N, K}, 14), random_tensor({N}, 15)},
       {0},
       {},
       [](std::vector<Tensor>& a) { ops::linear(a[0], a[1], a[2], a[3]); }});
  cases.push_back({"linear_backward accumulates",
                   2e-2,
                   {random_tensor({B, T, K}, 16), random_tensor({N, K}, 17), random_tensor({N}, 18),
                    random_tensor({B, T, N}, 19), random_tensor({B, T, K}, 20), random_tensor({N, K}, 21)},
                   {0, 1, 2},
                   {},
                   [](std::vector<Tensor>& a) { ops::linear_backward(a[0], a[1], a[2], a[3], a[4], a[5]); }});
  // Layernorm outputs reach ~3 (normalised values times weights near 1).
  cases.push_back({"layernorm",
                   2e-2,
                   {Tensor::zeros({B, T, C}), Tensor::zeros({B * T}), Tensor::zeros({B * T}),
                    random_tensor({B, T, C}, 22, 2.0), random_tensor({C}, 23), random_tensor({C}, 24)},
                   {0, 1, 2},
                   {1, 2},
                   [](std::vector<Tensor>& a) { ops::layernorm(a[0], a[1], a[2], a[3], a[4], a[5]); }});
  {
    // Backward needs the statistics of its x: computed once in f32 from the f32 x.
    Tensor x = random_tensor({B, T, C}, 25, 2.0), w = random_tensor({C}, 26), b = random_tensor({C}, 27);
    Tensor out = Tensor::empty({B, T, C}), mean = Tensor::empty({B * T}), rstd = Tensor::empty({B * T});
    ops::layernorm(out, mean, rstd, x, w, b);
    cases.push_back(
        {"layernorm_backward accumulates",
         3e-2,
         {random_tensor({B, T, C}, 28), random_tensor({C}, 29), random_tensor({C}, 30), random_tensor({B, T, C}, 31), x,
          w, mean, rstd},
         {0, 1, 2},
         {6, 7},
         [](std::vector<Tensor>& a) { ops::layernorm_backward(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]); }});
  }
  cases.push_back({"gelu",
                   2e-2,
                   {Tensor::zeros({B, T, C}), random_tensor({B, T, C}, 32, 3.0)},
                   {0},
                   {},
                   [](std::vector<Tensor>& a) { ops::gelu(a[0], a[1]); }});
  cases.push_back({"gelu_backward accumulates",
                   2e-2,
                   {random_tensor({B, T, C}, 33), random_tensor({B, T, C}, 34), random_tensor({B, T, C}, 35, 3.0)},
                   {0},
                   {},
                   [](std::vector<Tensor>& a) { ops::gelu_backward(a[0], a[1], a[2]); }});
  cases.push_back({"attention",
                   3e-2,
                   {Tensor::zeros({B, T, C}), Tensor::zeros({B, NH, T}), random_tensor({B, T, 3 * C}, 36)},
                   {0, 1},
                   {1},
                   [NH](std::vector<Tensor>& a) { ops::attention(a[0], a[1], a[2], NH); }});
  {
    Tensor qkv = random_tensor({B, T, 3 * C}, 37), out = Tensor::empty({B, T, C}), lse = Tensor::empty({B, NH, T});
    ops::attention(out, lse, qkv, NH);
    cases.push_back({"attention_backward accumulates",
                     3e-2,
                     {random_tensor({B, T, 3 * C}, 38), random_tensor({B, T, C}, 39), qkv, out, lse},
                     {0},
                     {4},
                     [NH](std::vector<Tensor>& a) { ops::attention_backward(a[0], a[1], a[2], a[3], a[4], NH); }});
  }
  {
    Tensor targets = Tensor::empty({B * T}, DType::i32);
    for (int64_t i = 0; i < targets.numel(); ++i) targets.set_item(i, i == 3 ? -100 : (i * 7) % V);
    // Losses ~ log V = 2.4 from logits in [-4, 4]: each logit's rounding moves
    // a loss by up to 4u; the gradient entries are all small, so they are
    // compared relative to the largest (floor 0).
    cases.push_back({"softmax_cross_entropy losses",
                     3e-2,
                     {Tensor::zeros({B * T}), Tensor::zeros({B * T, V}), random_tensor({B * T, V}, 40, 4.0), targets},
                     {0},
                     {0},
                     [](std::vector<Tensor>& a) { ops::softmax_cross_entropy(a[0], a[1], a[2], a[3], 0.1f); }});
    cases.push_back({"softmax_cross_entropy dlogits",
                     3e-2,
                     {Tensor::zeros({B * T}), Tensor::zeros({B * T, V}), random_tensor({B * T, V}, 40, 4.0), targets},
                     {1},
                     {0},
                     [](std::vector<Tensor>& a) { ops::softmax_cross_entropy(a[0], a[1], a[2], a[3], 0.1f); },
                     0.0});
  }
  {
    Tensor tokens = Tensor::empty({B, T}, DType::i32);
    for (int64_t i = 0; i < tokens.numel(); ++i) tokens.set_item(i, (i * 5) % V);
    cases.push_back({"embedding",
                     1e-2,
                     {Tensor::zeros({B, T, C}), tokens, random_tensor({V, C}, 41), random_tensor({T + 2, C}, 42)},
                     {0},
                     {},
                     [](std::vector<Tensor>& a) { ops::embedding(a[0], a[1], a[2], a[3]); }});
    cases.push_back({"embedding_backward accumulates",
                     2e-2,
                     {random_tensor({V, C}, 43), random_tensor({T + 2, C}, 44), random_tensor({B, T, C}, 45), tokens},
                     {0, 1},
                     {},
                     [](std::vector<Tensor>& a) { ops::embedding_backward(a[0], a[1], a[2], a[3]); }});
  }
  cases.push_back({"add",
                   1e-2,
                   {Tensor::zeros({B, T, C}), random_tensor({B, T, C}, 46), random_tensor({B, T, C}, 47)},
                   {0},
                   {},
                   [](std::vector<Tensor>& a) { ops::add(a[0], a[1], a[2]); }});
  cases.push_back({"add in place",
                   1e-2,
                   {random_tensor({B, T, C}, 48), random_tensor({B, T, C}, 49)},
                   {0},
                   {},
                   [](std::vector<Tensor>& a) { ops::add(a[0], a[0], a[1]); }});
  cases.push_back({"add_ accumulates",
                   1e-2,
                   {random_tensor({B, T, C}, 50), random_tensor({B, T, C}, 51)},
                   {0},
                   {},
                   [](std::vector<Tensor>& a) { ops::add_(a[0], a[1], -0.75f); }});
  cases.push_back(
      {"scale", 1e-2, {Tensor::zeros({B, T, C}), random_tensor({B, T, C}, 52)}, {0}, {}, [](std::vector<Tensor>& a) {
         ops::scale(a[0], a[1], 3.0f);
       }});
  return cases;
}

}  // namespace

TEST_CASE("every op runs in bf16 and f16 on the CPU and matches the f32 op", "[precision][ops]") {
  for (const OpCase& c : op_cases()) {
    for (DType dt : {DType::bf16, DType::f16}) check_case(c, dt);
  }
}

TEST_CASE("low-precision ops carry NaN and infinity where the f32 op does", "[precision][ops]") {
  for (DType dt : {DType::bf16, DType::f16}) {
    Tensor x = random_tensor({4, 6}, 60);
    x.set_item(3, NAN);
    x.set_item(7, INFINITY);
    x.set_item(8, -INFINITY);
    Tensor y = random_tensor({4, 6}, 61);
    Tensor ref = Tensor::empty({4, 6}), low = Tensor::empty({4, 6}, dt);
    ops::add(ref, x, y);
    ops::add(low, cast_to(x, dt), cast_to(y, dt));
    CHECK_CLOSE(low, ref, tolerance_for(dt, 0.0, 1e-2));
    CHECK(std::isnan(low.item(3)));
    CHECK(low.item(7) == INFINITY);
    CHECK(low.item(8) == -INFINITY);
    // A NaN in one row of a matmul input reaches exactly that row of the output.
    Tensor a = random_tensor({3, 4}, 62), b = random_tensor({4, 2}, 63);
    a.set_item(5, NAN);  // row 1
    Tensor mref = Tensor::empty({3, 2}), mlow = Tensor::empty({3, 2}, dt);
    ops::matmul(mref, a, b);
    ops::matmul(mlow, cast_to(a, dt), cast_to(b, dt));
    CHECK_CLOSE(mlow, mref, tolerance_for(dt, 0.0, 2e-2));
    CHECK(std::isnan(mlow.item(2)));
    CHECK(std::isfinite(mlow.item(0)));
  }
}

TEST_CASE("a bf16 gradient accumulates with one rounding per call", "[precision][ops]") {
  // Near 256 bf16 values are 2 apart. db = 256 gets a^T @ dout = 1.25 + 1.25
  // added in one call: converted in, summed in f32 (258.5), rounded once ->
  // 258. Rounding after each row would give 256 + 1.25 -> 258, + 1.25 -> 260;
  // writing instead of adding would give 2.5.
  Tensor db = Tensor::full({1, 1}, 256.0, DType::bf16);
  Tensor a = Tensor::full({2, 1}, 1.0, DType::bf16);      // [M=2, K=1]
  Tensor b = Tensor::full({1, 1}, 1.0, DType::bf16);      // [K=1, N=1]
  Tensor dout = Tensor::full({2, 1}, 1.25, DType::bf16);  // [M=2, N=1]
  Tensor da;
  ops::matmul_backward(da, db, dout, a, b);
  CHECK(db.item(0) == 258.0);
}

TEST_CASE("mixed dtypes stay refused on the CPU as on CUDA", "[precision][ops][validation]") {
  Tensor x = Tensor::zeros({4, 8}, DType::bf16), out = Tensor::zeros({4, 8}, DType::f16);
  CHECK_THROWS_WITH(ops::gelu(out, x), Catch::Contains("'out'") && Catch::Contains("expected bf16"));
  Tensor w = Tensor::zeros({8}, DType::bf16), mean = Tensor::zeros({4}, DType::bf16), rstd = Tensor::zeros({4});
  Tensor ln = Tensor::zeros({4, 8}, DType::bf16);
  CHECK_THROWS_WITH(ops::layernorm(ln, mean, rstd, x, w, w), Catch::Contains("'mean'") && Catch::Contains("f32"));
  Tensor i = Tensor::zeros({4, 8}, DType::i32);
  CHECK_THROWS_WITH(ops::gelu(i, i), Catch::Contains("f32, bf16 or f16 on cpu"));
}

TEST_CASE("adamw and the global norm take bf16 gradients on the CPU", "[precision][ops]") {
  const int64_t n = 37;
  Tensor grad32 = random_tensor({n}, 70);
  Tensor grad16 = cast_to(grad32, DType::bf16);
  Tensor rounded = cast_to(grad16, DType::f32);
  // Global norm of the bf16 gradients is the norm of their f32 values.
  CHECK(ops::global_norm({grad16}) == ops::global_norm({rounded}));
  ops::AdamWConfig cfg;
  cfg.lr = 1e-2f;
  auto state = [&](const Tensor& grad, bool copy) {
    ops::AdamWTensor t;
    t.param = random_tensor({n}, 71);
    t.grad = grad;
    t.exp_avg = Tensor::zeros({n});
    t.exp_avg_sq = Tensor::zeros({n});
    if (copy) t.param_copy = Tensor::zeros({n}, DType::bf16);
    t.weight_decay = 0.1f;
    return t;
  };
  std::vector<ops::AdamWTensor> low{state(grad16, true)}, ref{state(rounded, false)};
  ops::adamw_step(low, cfg);
  ops::adamw_step(ref, cfg);
  CHECK(low[0].param.to_vector() == ref[0].param.to_vector());
  // param_copy is the bf16 rounding of the updated f32 master.
  CHECK(bits16(low[0].param_copy) == bits16(cast_to(ref[0].param, DType::bf16)));
}
