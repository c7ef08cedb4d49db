// cast bit for bit against dtype.h on special values (NaN, ties, subnormals,
// overflow), and validation of add, add_, scale and cast (values of each:
// tests/op_cases/elementwise.cpp and cast.cpp).
#include <cstring>

#include "op_test_util.h"

namespace dtrain::testing {

TEST_CASE("cast f32 <-> bf16 and f32 <-> f16 agree bit for bit with dtype.h", "[ops][cast]") {
  // Ordinary values, ties, subnormals, overflow, infinities and NaN.
  std::vector<float> values = {0.0f,   -0.0f,   1.0f,     -2.5f,     65504.0f, 65520.0f,    1e-8f,       6e-8f,
                               1e-40f, 3.4e38f, INFINITY, -INFINITY, NAN,      1.00390625f, 1.01171875f, 0.333333f};
  std::mt19937 rng(5);
  for (int i = 0; i < 5000; ++i) values.push_back(bits_float(rng()));
  const int64_t n = static_cast<int64_t>(values.size());
  Tensor x = Tensor::empty({n});
  std::memcpy(x.data_ptr(), values.data(), values.size() * sizeof(float));
  Tensor b16 = Tensor::empty({n}, DType::bf16), h16 = Tensor::empty({n}, DType::f16);
  ops::cast(b16, x);
  ops::cast(h16, x);
  const auto* pb = static_cast<const uint16_t*>(b16.data_ptr());
  const auto* ph = static_cast<const uint16_t*>(h16.data_ptr());
  int bad_b = 0, bad_h = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float v = values[i];
    if (std::isnan(v)) {
      bad_b += !std::isnan(bf16_to_float(pb[i]));
      bad_h += !std::isnan(f16_to_float(ph[i]));
    } else {
      bad_b += pb[i] != float_to_bf16(v);
      bad_h += ph[i] != float_to_f16(v);
    }
  }
  CHECK(bad_b == 0);
  CHECK(bad_h == 0);
  Tensor back_b = Tensor::empty({n}), back_h = Tensor::empty({n});
  ops::cast(back_b, b16);
  ops::cast(back_h, h16);
  for (int64_t i = 0; i < n; ++i) {
    const float rb = back_b.data<float>()[i], rh = back_h.data<float>()[i];
    if (std::isnan(values[i])) {
      CHECK(std::isnan(rb));
      CHECK(std::isnan(rh));
    } else {
      CHECK(float_bits(rb) == float_bits(bf16_to_float(pb[i])));
      CHECK(float_bits(rh) == float_bits(f16_to_float(ph[i])));
    }
  }
  // bf16 <-> f16 (one rounding, through f32) and same-dtype copies.
  Tensor h_from_b = Tensor::empty({n}, DType::f16), same = Tensor::empty({n}, DType::bf16);
  ops::cast(h_from_b, b16);
  ops::cast(same, b16);
  for (int64_t i = 0; i < 64; ++i) {
    if (!std::isnan(values[i]))
      CHECK(static_cast<const uint16_t*>(h_from_b.data_ptr())[i] == float_to_f16(bf16_to_float(pb[i])));
    CHECK(static_cast<const uint16_t*>(same.data_ptr())[i] == pb[i]);
  }
}

TEST_CASE("elementwise ops and cast validate their arguments", "[ops][elementwise][validation]") {
  Tensor a = Tensor::zeros({3, 4}), b = Tensor::zeros({3, 4}), out = Tensor::zeros({3, 4}), none;
  check_error([&] { ops::add(out, a, Tensor::zeros({4, 3})); }, {"add", "'b'", "[3, 4]", "[4, 3]"});
  check_error([&] { ops::add(out, none, b); }, {"add", "'a'", "undefined"});
  check_error([&] { ops::add(out, a, Tensor::zeros({3, 4}, DType::bf16)); }, {"'b'", "dtype"});
  check_error(
      [&] {
        ops::add(out, Tensor::zeros({3, 4}, DType::bf16), Tensor::zeros({3, 4}, DType::bf16));
      },
      {"'a'", "f32", "bf16"});
  check_error(
      [&] {
        Tensor o = fake_cuda({3, 4});
        ops::add(o, a, b);
      },
      {"'out'", "device"});
  Tensor flat = Tensor::zeros({13});
  check_error(
      [&] {
        Tensor o = flat.narrow(1, 12).reshape({3, 4});
        ops::add(o, flat.narrow(0, 12).reshape({3, 4}), b);
      },
      {"'out'", "partly overlaps", "'a'"});
  check_error([&] { ops::add_(a, Tensor::zeros({12})); }, {"add_", "'x'", "shape"});
  check_error([&] { ops::add_(a, b, NAN); }, {"add_", "'alpha'"});
  check_error(
      [&] {
        Tensor y = flat.narrow(1, 12);
        ops::add_(y, flat.narrow(0, 12));
      },
      {"'y'", "partly overlaps"});
  check_error([&] { ops::scale(out, Tensor::zeros({3, 5}), 2.0f); }, {"scale", "'out'", "shape"});
  check_error([&] { ops::scale(out, a, INFINITY); }, {"scale", "'alpha'"});
  check_error(
      [&] {
        Tensor o = Tensor::zeros({3, 4}, DType::i32);
        ops::cast(o, a);
      },
      {"cast", "'out'", "i32"});
  check_error([&] { ops::cast(out, Tensor::zeros({3, 4}, DType::u8)); }, {"cast", "'x'", "u8"});
  check_error(
      [&] {
        Tensor o = Tensor::zeros({4, 3}, DType::bf16);
        ops::cast(o, a);
      },
      {"'out'", "shape"});
  check_error(
      [&] {
        Tensor o = a.reshape({3, 4});
        ops::cast(o, a);
      },
      {"'out'", "overlaps", "'x'"});
  check_error(
      [&] {
        Tensor o = fake_cuda({3, 4}, DType::bf16);
        ops::cast(o, a);
      },
      {"'out'", "device"});
}

}  // namespace dtrain::testing
