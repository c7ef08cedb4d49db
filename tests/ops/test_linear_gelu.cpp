// linear_gelu and matmul_dgelu_bgrad: argument validation, the path counter,
// and the fused pair against the unfused ops it replaces (values against the
// naive references and finite differences: tests/op_cases/linear_gelu.cpp,
// tests/op_cases/matmul_dgelu_bgrad.cpp).
#include "op_test_util.h"

namespace dtrain::testing {

TEST_CASE("linear_gelu and matmul_dgelu_bgrad give the unfused ops' bits on the CPU", "[ops][linear_gelu]") {
  // Large enough for the threaded GEMM split and the threaded column sums.
  const int64_t rows = 300, channels = 48, hidden = 192;
  Tensor x = random_tensor({rows, channels}, 31), w_fc = random_tensor({hidden, channels}, 32);
  Tensor b_fc = random_tensor({hidden}, 33), w_proj = random_tensor({channels, hidden}, 34);
  Tensor dout = random_tensor({rows, channels}, 35);
  Tensor pre = Tensor::empty({rows, hidden}), out = Tensor::empty({rows, hidden});
  const ops::FusedEpilogueCounts before = ops::fused_epilogue_counts();
  ops::linear_gelu(out, pre, x, w_fc, b_fc);
  Tensor pre_ref = Tensor::empty({rows, hidden}), out_ref = Tensor::empty({rows, hidden});
  ops::linear(pre_ref, x, w_fc, b_fc);
  ops::gelu(out_ref, pre_ref);
  CHECK_CLOSE(to_vec(pre), to_vec(pre_ref), 0.0);
  CHECK_CLOSE(to_vec(out), to_vec(out_ref), 0.0);

  Tensor dpre = Tensor::empty({rows, hidden}), dbias = random_tensor({hidden}, 36);
  Tensor dbias_ref = dbias.clone(), dgelu = Tensor::zeros({rows, hidden}), dpre_ref = Tensor::zeros({rows, hidden});
  ops::matmul_dgelu_bgrad(dpre, dbias, dout, w_proj, pre);
  Tensor none;
  ops::linear_backward(dgelu, none, none, dout, out_ref, w_proj);
  ops::gelu_backward(dpre_ref, dgelu, pre_ref);
  ops::linear_backward(none, none, dbias_ref, dpre_ref, x, w_fc);
  CHECK_CLOSE(to_vec(dpre), to_vec(dpre_ref), 0.0);
  CHECK_CLOSE(to_vec(dbias), to_vec(dbias_ref), 0.0);

  // Both calls ran composed (the CPU has no fused GEMM epilogue).
  const ops::FusedEpilogueCounts after = ops::fused_epilogue_counts();
  CHECK(after.composed - before.composed == 2);
  CHECK(after.fused == before.fused);
}

TEST_CASE("linear_gelu validates its arguments", "[ops][linear_gelu][validation]") {
  Tensor x = Tensor::zeros({2, 3}), w = Tensor::zeros({4, 3}), b = Tensor::zeros({4});
  Tensor out = Tensor::zeros({2, 4}), pre = Tensor::zeros({2, 4}), none;
  check_error([&] { ops::linear_gelu(out, pre, none, w, b); }, {"linear_gelu", "'x'", "undefined"});
  check_error([&] { ops::linear_gelu(out, pre, x, Tensor::zeros({4, 5}), b); }, {"linear_gelu", "'weight'", "[4, 5]"});
  check_error([&] { ops::linear_gelu(out, none, x, w, b); }, {"linear_gelu", "'pre'", "undefined"});
  check_error(
      [&] {
        Tensor p = Tensor::zeros({2, 5});
        ops::linear_gelu(out, p, x, w, b);
      },
      {"linear_gelu", "'pre'", "[2, 4]", "[2, 5]"});
  check_error(
      [&] {
        Tensor o = Tensor::zeros({2, 4}, DType::bf16);
        ops::linear_gelu(o, pre, x, w, b);
      },
      {"linear_gelu", "'out'", "dtype"});
  check_error([&] { ops::linear_gelu(out, out, x, w, b); }, {"linear_gelu", "'out'", "overlaps", "'pre'"});
  check_error([&] { ops::linear_gelu(out, pre, x, fake_cuda({4, 3}), b); }, {"linear_gelu", "'weight'", "device"});
}

TEST_CASE("matmul_dgelu_bgrad validates its arguments", "[ops][linear_gelu][validation]") {
  Tensor dout = Tensor::zeros({2, 3}), w = Tensor::zeros({3, 8}), pre = Tensor::zeros({2, 8});
  Tensor dpre = Tensor::zeros({2, 8}), dbias = Tensor::zeros({8}), none;
  check_error([&] { ops::matmul_dgelu_bgrad(dpre, dbias, none, w, pre); },
              {"matmul_dgelu_bgrad", "'dout'", "undefined"});
  check_error([&] { ops::matmul_dgelu_bgrad(none, dbias, dout, w, pre); },
              {"matmul_dgelu_bgrad", "'dpre'", "undefined"});
  check_error(
      [&] {
        ops::matmul_dgelu_bgrad(dpre, dbias, dout, Tensor::zeros({4, 8}), pre);
      },
      {"matmul_dgelu_bgrad", "'weight'", "[3, H]", "[4, 8]"});
  check_error(
      [&] {
        ops::matmul_dgelu_bgrad(dpre, dbias, dout, w, Tensor::zeros({2, 7}));
      },
      {"matmul_dgelu_bgrad", "'pre'", "[2, 8]", "[2, 7]"});
  check_error(
      [&] {
        Tensor d = Tensor::zeros({3, 8});
        ops::matmul_dgelu_bgrad(d, dbias, dout, w, pre);
      },
      {"matmul_dgelu_bgrad", "'dpre'", "[2, 8]", "[3, 8]"});
  check_error(
      [&] {
        Tensor db = Tensor::zeros({7});
        ops::matmul_dgelu_bgrad(dpre, db, dout, w, pre);
      },
      {"matmul_dgelu_bgrad", "'dbias'", "[8]", "[7]"});
  check_error(
      [&] {
        ops::matmul_dgelu_bgrad(dpre, dbias, dout, w, Tensor::zeros({2, 8}, DType::bf16));
      },
      {"matmul_dgelu_bgrad", "'pre'", "dtype"});
  check_error([&] { ops::matmul_dgelu_bgrad(dpre, dbias, dout, w, dpre); },
              {"matmul_dgelu_bgrad", "'dpre'", "overlaps", "'pre'"});
  check_error(
      [&] {
        ops::matmul_dgelu_bgrad(dpre, dbias, dout, fake_cuda({3, 8}), pre);
      },
      {"matmul_dgelu_bgrad", "'weight'", "device"});
}

}  // namespace dtrain::testing
