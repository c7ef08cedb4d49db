// softmax_cross_entropy against a naive loop and finite differences.
#include "op_test_util.h"

namespace dtrain::testing {
namespace {

Vec ref_losses(const Vec& logits, const std::vector<int32_t>& targets, int64_t v, int32_t ignore) {
  Vec out(targets.size(), 0.0);
  for (size_t r = 0; r < targets.size(); ++r) {
    if (targets[r] == ignore) continue;
    double mx = -INFINITY, sum = 0.0;
    for (int64_t i = 0; i < v; ++i) mx = std::max(mx, logits[r * v + i]);
    for (int64_t i = 0; i < v; ++i) sum += std::exp(logits[r * v + i] - mx);
    out[r] = std::log(sum) + mx - logits[r * v + targets[r]];
  }
  return out;
}

Tensor targets_tensor(const std::vector<int32_t>& t) {
  Tensor out = Tensor::empty({static_cast<int64_t>(t.size())}, DType::i32);
  for (size_t i = 0; i < t.size(); ++i) out.data<int32_t>()[i] = t[i];
  return out;
}

}  // namespace

TEST_CASE("softmax_cross_entropy losses and gradient match a reference", "[ops][cross_entropy]") {
  const std::pair<int64_t, int64_t> cases[] = {{1, 1}, {1, 2}, {3, 5}, {7, 17}, {4, 1000}, {2, 50257}};
  uint32_t seed = 1;
  for (const cpu::Isa isa : cpu_isas())
    for (const auto& [n, v] : cases) {
      for (float grad_scale : {1.0f, 0.25f}) {
        const IsaScope scope(isa);
        CAPTURE(isa_name(isa), n, v, grad_scale);
        const Vec logits = random_vec(static_cast<size_t>(n * v), seed++, -4.0, 4.0);
        std::vector<int32_t> targets;
        std::mt19937 rng(seed++);
        for (int64_t r = 0; r < n; ++r) targets.push_back(static_cast<int32_t>(rng() % v));
        if (n > 2) targets[1] = -100;  // an ignored row
        Tensor losses = Tensor::full({n}, NAN), dlogits = Tensor::full({n, v}, NAN);
        ops::softmax_cross_entropy(losses, dlogits, from_vec(logits, {n, v}), targets_tensor(targets), grad_scale);
        CHECK_CLOSE(to_vec(losses), ref_losses(logits, targets, v, -100), 1e-5);
        // d(sum_r losses[r] * grad_scale) / d logits
        if (n * v <= 200) {
          const Vec w(static_cast<size_t>(n), grad_scale);
          // v by copy: C++17 lambdas cannot capture a structured binding (clang rejects it).
          const Vec fd = fd_grad([&, v = v](const Vec& x) { return ref_losses(x, targets, v, -100); }, logits, w);
          CHECK_CLOSE(to_vec(dlogits), fd, 1e-5);
        } else {
          // Analytic reference: (softmax - onehot) * grad_scale, 0 on ignored rows.
          Vec ref(logits.size(), 0.0);
          for (int64_t r = 0; r < n; ++r) {
            if (targets[r] == -100) continue;
            double mx = -INFINITY, sum = 0.0;
            for (int64_t i = 0; i < v; ++i) mx = std::max(mx, logits[r * v + i]);
            for (int64_t i = 0; i < v; ++i) sum += std::exp(logits[r * v + i] - mx);
            for (int64_t i = 0; i < v; ++i) ref[r * v + i] = std::exp(logits[r * v + i] - mx) / sum * grad_scale;
            ref[r * v + targets[r]] -= grad_scale;
          }
          CHECK_CLOSE(to_vec(dlogits), ref, 1e-6);
        }
        // dlogits written in place over logits gives the same result.
        Tensor inplace = from_vec(logits, {n, v});
        Tensor losses2 = Tensor::empty({n});
        ops::softmax_cross_entropy(losses2, inplace, inplace, targets_tensor(targets), grad_scale);
        CHECK_CLOSE(to_vec(inplace), to_vec(dlogits), 0.0);
        CHECK_CLOSE(to_vec(losses2), to_vec(losses), 0.0);
        // Losses only.
        Tensor none, losses3 = Tensor::empty({n});
        ops::softmax_cross_entropy(losses3, none, from_vec(logits, {n, v}), targets_tensor(targets), grad_scale);
        CHECK_CLOSE(to_vec(losses3), to_vec(losses), 0.0);
      }
    }
}

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
