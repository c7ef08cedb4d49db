// embedding: argument validation and token range (values, repeated tokens
// included: the op case registry, tests/op_cases/embedding.cpp).
#include "op_test_util.h"

namespace dtrain::testing {
namespace {

Tensor tokens_tensor(const std::vector<int32_t>& t, int64_t b, int64_t s) {
  Tensor out = Tensor::empty({b, s}, DType::i32);
  for (size_t i = 0; i < t.size(); ++i) out.data<int32_t>()[i] = t[i];
  return out;
}

}  // namespace

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
