// The suite's comparison (tests/compare.h) must fail on every kind of wrong
// output: a NaN, an Inf, one wrong element, a shape or size mismatch. If any
// of these passed, every test built on it could not fail.
#include <cmath>
#include <limits>

#include "check_close.h"

using dtrain::DType;
using dtrain::Tensor;
using dtrain::testing::compare;

namespace {
const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();
}  // namespace

TEST_CASE("compare passes equal and nearly equal values", "[compare]") {
  CHECK(compare(std::vector<double>{1, 2, 3}, std::vector<double>{1, 2, 3}, 0.0).ok);
  CHECK(compare(std::vector<double>{1, 2, 3 + 1e-7}, std::vector<double>{1, 2, 3}, 1e-6).ok);
  CHECK(compare(std::vector<double>{}, std::vector<double>{}, 0.0).ok);
  // A reference that is itself NaN or Inf is matched only by the same value.
  CHECK(compare(std::vector<double>{kNaN, kInf}, std::vector<double>{kNaN, kInf}, 0.0).ok);
  CHECK_FALSE(compare(std::vector<double>{1.0, kInf}, std::vector<double>{kNaN, kInf}, 1.0).ok);
  CHECK_FALSE(compare(std::vector<double>{kNaN, -kInf}, std::vector<double>{kNaN, kInf}, 1.0).ok);
}

TEST_CASE("compare fails on a NaN and names its index", "[compare]") {
  std::vector<double> ref(100, 0.5), got(100, 0.5);
  got[37] = kNaN;
  const auto c = compare(got, ref, 1e9);
  CHECK_FALSE(c.ok);
  CHECK(c.message.find("element 37") != std::string::npos);
  // All NaN: the old max()-based error scored this 0.
  CHECK_FALSE(compare(std::vector<double>(8, kNaN), std::vector<double>(8, 1.0), 1e9).ok);
}

TEST_CASE("compare fails on an Inf of either sign", "[compare]") {
  std::vector<double> ref{1, 2, 3}, got{1, kInf, 3};
  auto c = compare(got, ref, 1e9);
  CHECK_FALSE(c.ok);
  CHECK(c.message.find("element 1") != std::string::npos);
  got[1] = -kInf;
  CHECK_FALSE(compare(got, ref, 1e9).ok);
}

TEST_CASE("compare fails on a single wrong element and reports it", "[compare]") {
  std::vector<double> ref(1000), got;
  for (size_t i = 0; i < ref.size(); ++i) ref[i] = std::sin(static_cast<double>(i));
  got = ref;
  got[613] += 1e-3;
  const auto c = compare(got, ref, 1e-4);
  CHECK_FALSE(c.ok);
  CHECK(c.error == Approx(1e-3).epsilon(1e-6));
  CHECK(c.message.find("worst element 613") != std::string::npos);
  CHECK(compare(got, ref, 2e-3).ok);
}

TEST_CASE("compare fails on size and shape mismatches", "[compare]") {
  CHECK_FALSE(compare(std::vector<double>{1, 2}, std::vector<double>{1, 2, 3}, 1e9).ok);
  const Tensor a = Tensor::zeros({2, 3}, DType::f32), b = Tensor::zeros({3, 2}, DType::f32);
  const auto c = compare(a, b, 1e9);
  CHECK_FALSE(c.ok);
  CHECK(c.message.find("shape mismatch: got [2, 3], expected [3, 2]") != std::string::npos);
  CHECK(compare(a, a.clone(), 0.0).ok);
}

TEST_CASE("floor 0 makes the error relative to the largest reference value", "[compare]") {
  // Softmax-like terms of ~1e-3: with the default floor of 1 a tolerance of
  // 1e-3 accepts a result 60% off; relative to the largest term it does not.
  const std::vector<double> ref{1.5e-3, 1e-3, 5e-4}, off{0.6e-3, 0.4e-3, 0.2e-3};
  CHECK(compare(off, ref, 1e-3).ok);
  CHECK_FALSE(compare(off, ref, 1e-2, 0.0).ok);
  CHECK(compare(std::vector<double>{1.5e-3 * (1 + 1e-3), 1e-3, 5e-4}, ref, 1e-2, 0.0).ok);
}

TEST_CASE("per-dtype tolerances follow the rounding units", "[compare]") {
  using dtrain::testing::tolerance_for;
  CHECK(tolerance_for(DType::f32, 1e-5, 1e-2) == 1e-5);
  CHECK(tolerance_for(DType::bf16, 1e-5, 1e-2) == 1e-2);
  CHECK(tolerance_for(DType::f16, 1e-5, 1e-2) == Approx(2.5e-3));
  CHECK(tolerance_for(DType::i32, 1e-5, 1e-2) == 0.0);
}

TEST_CASE("CHECK_CLOSE accepts tensors on either side and vectors", "[compare]") {
  const Tensor t = Tensor::full({4}, 2.0, DType::f32);
  CHECK_CLOSE(t, t.clone(), 0.0);
  CHECK_CLOSE(t, std::vector<double>(4, 2.0), 0.0);
  CHECK_CLOSE(std::vector<float>(3, 1.0f), std::vector<float>(3, 1.0f), 0.0, 0.0);
}
