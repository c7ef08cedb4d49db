// softmax_cross_entropy: stability at large and -inf logits, a custom ignore index,
// and validation (values and gradients: tests/op_cases/softmax_cross_entropy.cpp).
#include "op_test_util.h"

namespace dtrain::testing {
namespace {

Tensor targets_tensor(const std::vector<int32_t>& t) {
  Tensor out = Tensor::empty({static_cast<int64_t>(t.size())}, DType::i32);
  for (size_t i = 0; i < t.size(); ++i) out.data<int32_t>()[i] = t[i];
  return out;
}

}  // namespace

TEST_CASE("softmax_cross_entropy is stable for large logits and honours a custom ignore index",
          "[ops][cross_entropy]") {
  for (const cpu::Isa isa : cpu_isas()) {
    const IsaScope scope(isa);
    CAPTURE(isa_name(isa));
    Tensor logits = Tensor::from_vector({1000.0f, 0.0f, -1000.0f, 5.0f, 5.0f, 5.0f}, {2, 3});
    Tensor losses = Tensor::empty({2}), dlogits = Tensor::empty({2, 3});
    ops::softmax_cross_entropy(losses, dlogits, logits, targets_tensor({0, 2}), 1.0f, 7);
    CHECK(losses.item(0) == Approx(0.0).margin(1e-6));
    CHECK(losses.item(1) == Approx(std::log(3.0)).epsilon(1e-6));
    for (float x : dlogits.to_vector()) CHECK(std::isfinite(x));
    ops::softmax_cross_entropy(losses, dlogits, logits, targets_tensor({7, 1}), 1.0f, 7);
    CHECK(losses.item(0) == 0.0);
    for (int i = 0; i < 3; ++i) CHECK(dlogits.item(i) == 0.0);
    // -inf logits (masked classes) get probability 0 and a finite loss.
    Tensor masked = Tensor::from_vector({-INFINITY, 1.0f, 2.0f, -INFINITY}, {1, 4});
    Tensor l1 = Tensor::empty({1}), d1 = Tensor::empty({1, 4});
    ops::softmax_cross_entropy(l1, d1, masked, targets_tensor({2}), 1.0f);
    CHECK(l1.item(0) == Approx(std::log(1.0 + std::exp(-1.0))).epsilon(1e-5));
    CHECK(d1.item(0) == 0.0);
    CHECK(d1.item(3) == 0.0);
  }
}

TEST_CASE("softmax_cross_entropy validates its arguments and target range", "[ops][cross_entropy][validation]") {
  Tensor logits = Tensor::zeros({3, 5}), losses = Tensor::zeros({3}), dlogits = Tensor::zeros({3, 5}), none;
  const Tensor targets = targets_tensor({0, 1, 4});
  check_error(
      [&] {
        ops::softmax_cross_entropy(losses, dlogits, logits, targets_tensor({0, 5, 1}));
      },
      {"softmax_cross_entropy", "'targets'", "element 1", "out of range", "< 5", "got 5"});
  check_error(
      [&] {
        ops::softmax_cross_entropy(losses, dlogits, logits, targets_tensor({0, 1, -1}));
      },
      {"'targets'", "element 2", "got -1", "-100"});
  check_error(
      [&] {
        ops::softmax_cross_entropy(losses, none, logits, targets_tensor({0, 1, -100}), 1.0f, 3);
      },
      {"'targets'", "got -100"});
  check_error(
      [&] {
        ops::softmax_cross_entropy(losses, dlogits, logits, targets_tensor({0, 1}));
      },
      {"'targets'", "[3]", "[2]"});
  check_error([&] { ops::softmax_cross_entropy(losses, dlogits, logits, Tensor::zeros({3})); },
              {"'targets'", "dtype", "i32", "f32"});
  check_error([&] { ops::softmax_cross_entropy(losses, dlogits, Tensor::zeros({15}), targets); },
              {"'logits'", "dimensions"});
  check_error(
      [&] {
        ops::softmax_cross_entropy(losses, dlogits, Tensor::zeros({3, 0}), targets);
      },
      {"'logits'", "at least one class"});
  check_error(
      [&] {
        Tensor l = Tensor::zeros({3}, DType::bf16);
        ops::softmax_cross_entropy(l, dlogits, logits, targets);
      },
      {"'losses'", "dtype"});
  check_error(
      [&] {
        Tensor l = Tensor::zeros({4});
        ops::softmax_cross_entropy(l, dlogits, logits, targets);
      },
      {"'losses'", "shape"});
  check_error(
      [&] {
        Tensor d = Tensor::zeros({3, 4});
        ops::softmax_cross_entropy(losses, d, logits, targets);
      },
      {"'dlogits'", "shape"});
  check_error(
      [&] {
        Tensor d = fake_cuda({3, 5});
        ops::softmax_cross_entropy(losses, d, logits, targets);
      },
      {"'dlogits'", "device"});
  check_error([&] { ops::softmax_cross_entropy(losses, dlogits, logits, targets, NAN); }, {"'grad_scale'"});
  Tensor flat = Tensor::zeros({20});
  check_error(
      [&] {
        Tensor d = flat.narrow(5, 15).reshape({3, 5});
        ops::softmax_cross_entropy(losses, d, flat.narrow(0, 15).reshape({3, 5}), targets);
      },
      {"'dlogits'", "partly overlaps", "'logits'"});
  check_error(
      [&] {
        Tensor l = logits.reshape({15}).narrow(0, 3);
        ops::softmax_cross_entropy(l, none, logits, targets);
      },
      {"'losses'", "overlaps", "'logits'"});
  check_error([&] { ops::softmax_cross_entropy(none, dlogits, logits, targets); }, {"'losses'", "undefined"});
}

}  // namespace dtrain::testing
