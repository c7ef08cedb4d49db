// embedding and embedding_backward against naive loops; repeated tokens.
#include "op_test_util.h"

namespace dtrain::testing {
namespace {

Tensor tokens_tensor(const std::vector<int32_t>& t, int64_t b, int64_t s) {
  Tensor out = Tensor::empty({b, s}, DType::i32);
  for (size_t i = 0; i < t.size(); ++i) out.data<int32_t>()[i] = t[i];
  return out;
}

}  // namespace

TEST_CASE("embedding forward matches a naive loop", "[ops][embedding]") {
  struct Case {
    int64_t b, t, v, c, max_t;
  };
  const Case cases[] = {{1, 1, 1, 1, 1}, {2, 3, 5, 7, 4}, {3, 17, 11, 13, 17}, {4, 64, 50, 130, 80}};
  uint32_t seed = 1;
  for (const Case& k : cases) {
    CAPTURE(k.b, k.t, k.v, k.c, k.max_t);
    std::mt19937 rng(seed++);
    std::vector<int32_t> toks;
    for (int64_t i = 0; i < k.b * k.t; ++i) toks.push_back(static_cast<int32_t>(rng() % k.v));
    const Vec wte = random_vec(static_cast<size_t>(k.v * k.c), seed++);
    const Vec wpe = random_vec(static_cast<size_t>(k.max_t * k.c), seed++);
    Tensor out = Tensor::full({k.b, k.t, k.c}, NAN);
    ops::embedding(out, tokens_tensor(toks, k.b, k.t), from_vec(wte, {k.v, k.c}), from_vec(wpe, {k.max_t, k.c}));
    Vec ref(static_cast<size_t>(k.b * k.t * k.c));
    for (int64_t bt = 0; bt < k.b * k.t; ++bt)
      for (int64_t i = 0; i < k.c; ++i) ref[bt * k.c + i] = wte[toks[bt] * k.c + i] + wpe[(bt % k.t) * k.c + i];
    CHECK_CLOSE(to_vec(out), ref, 1e-6);
  }
}

TEST_CASE("embedding_backward accumulates every repeated token (no lost updates)", "[ops][embedding]") {
  struct Case {
    int64_t b, t, v, c;
  };
  // The large case runs threaded; v = 3 makes every row repeat many times.
  const Case cases[] = {{1, 1, 1, 1}, {2, 5, 3, 7}, {3, 7, 2, 5}, {8, 128, 3, 64}, {4, 96, 1000, 67}};
  uint32_t seed = 30;
  for (const Case& k : cases) {
    CAPTURE(k.b, k.t, k.v, k.c);
    std::mt19937 rng(seed++);
    std::vector<int32_t> toks;
    for (int64_t i = 0; i < k.b * k.t; ++i) toks.push_back(static_cast<int32_t>(rng() % k.v));
    const Vec dout = random_vec(static_cast<size_t>(k.b * k.t * k.c), seed++);
    const Vec dwte0 = random_vec(static_cast<size_t>(k.v * k.c), seed++);
    const Vec dwpe0 = random_vec(static_cast<size_t>((k.t + 2) * k.c), seed++);
    Tensor dwte = from_vec(dwte0, {k.v, k.c}), dwpe = from_vec(dwpe0, {k.t + 2, k.c});
    ops::embedding_backward(dwte, dwpe, from_vec(dout, {k.b, k.t, k.c}), tokens_tensor(toks, k.b, k.t));
    Vec rte = dwte0, rpe = dwpe0;
    for (int64_t bt = 0; bt < k.b * k.t; ++bt) {
      for (int64_t i = 0; i < k.c; ++i) {
        rte[toks[bt] * k.c + i] += dout[bt * k.c + i];
        rpe[(bt % k.t) * k.c + i] += dout[bt * k.c + i];
      }
    }
    CHECK_CLOSE(to_vec(dwte), rte, 1e-5);
    CHECK_CLOSE(to_vec(dwpe), rpe, 1e-5);
    // Either table may be skipped.
    Tensor none, only_pe = from_vec(dwpe0, {k.t + 2, k.c});
    ops::embedding_backward(none, only_pe, from_vec(dout, {k.b, k.t, k.c}), tokens_tensor(toks, k.b, k.t));
    CHECK_CLOSE(to_vec(only_pe), rpe, 1e-5);
  }
}

TEST_CASE("embedding validates its arguments and token range", "[ops][embedding][validation]") {
  Tensor wte = Tensor::zeros({5, 4}), wpe = Tensor::zeros({3, 4}), out = Tensor::zeros({2, 3, 4}), none;
  const Tensor toks = tokens_tensor({0, 1, 2, 3, 4, 0}, 2, 3);
  check_error(
      [&] {
        ops::embedding(out, tokens_tensor({0, 1, 5, 3, 4, 0}, 2, 3), wte, wpe);
      },
      {"embedding", "'tokens'", "element 2", "out of range", "< 5", "got 5"});
  check_error(
      [&] {
        ops::embedding(out, tokens_tensor({0, 1, 2, -3, 4, 0}, 2, 3), wte, wpe);
      },
      {"'tokens'", "element 3", "got -3"});
  check_error([&] { ops::embedding(out, Tensor::zeros({2, 3}), wte, wpe); }, {"'tokens'", "dtype", "i32"});
  check_error([&] { ops::embedding(out, toks.reshape({6}), wte, wpe); }, {"'tokens'", "dimensions"});
  check_error([&] { ops::embedding(out, toks, wte, Tensor::zeros({3, 5})); }, {"'wpe'", "[maxT, 4]"});
  check_error([&] { ops::embedding(out, toks, wte, Tensor::zeros({2, 4})); }, {"'tokens'", "T <= 2", "got 3"});
  check_error([&] { ops::embedding(out, toks, Tensor::zeros({5, 4}, DType::bf16), wpe); }, {"'wte'", "f32"});
  check_error([&] { ops::embedding(out, toks, wte, none); }, {"'wpe'", "undefined"});
  check_error(
      [&] {
        Tensor o = Tensor::zeros({2, 3, 5});
        ops::embedding(o, toks, wte, wpe);
      },
      {"'out'", "shape"});
  check_error(
      [&] {
        Tensor o = fake_cuda({2, 3, 4});
        ops::embedding(o, toks, wte, wpe);
      },
      {"'out'", "device"});
  check_error(
      [&] {
        Tensor o3 = Tensor::zeros({30}).narrow(0, 24).reshape({2, 3, 4});
        Tensor w = o3.reshape({24}).narrow(4, 20).reshape({5, 4});
        ops::embedding(o3, toks, w, wpe);
      },
      {"'out'", "overlaps", "'wte'"});
  Tensor dout = Tensor::zeros({2, 3, 4}), dwte = Tensor::zeros({5, 4}), dwpe = Tensor::zeros({3, 4});
  check_error(
      [&] {
        ops::embedding_backward(dwte, dwpe, dout, tokens_tensor({0, 1, 2, 3, 4, 9}, 2, 3));
      },
      {"embedding_backward", "'tokens'", "element 5", "got 9"});
  check_error([&] { ops::embedding_backward(dwte, dwpe, Tensor::zeros({2, 3, 5}), toks); }, {"'dwte'", "[V, 5]"});
  check_error(
      [&] {
        Tensor d = Tensor::zeros({2, 4});
        ops::embedding_backward(dwte, d, dout, toks);
      },
      {"'dwpe'", "maxT >= 3"});
  check_error([&] { ops::embedding_backward(dwte, dwpe, Tensor::zeros({2, 4, 4}), toks); }, {"'dout'", "shape"});
  check_error([&] { ops::embedding_backward(dwte, dwte, dout, toks); }, {"'dwpe'", "overlaps", "'dwte'"});
  check_error(
      [&] {
        Tensor d = fake_cuda({5, 4});
        ops::embedding_backward(d, dwpe, dout, toks);
      },
      {"device"});
}

}  // namespace dtrain::testing
