#include <catch2/catch.hpp>
#include <cmath>
#include <limits>

#include "dtrain/dtype.h"
#include "dtrain/error.h"

using namespace dtrain;

TEST_CASE("dtype sizes and names round-trip", "[dtype]") {
  for (DType d : {DType::f32, DType::bf16, DType::f16, DType::i32, DType::i64, DType::u8, DType::u16}) {
    CHECK(dtype_from_name(dtype_name(d)) == d);
  }
  CHECK(dtype_size(DType::f32) == 4);
  CHECK(dtype_size(DType::bf16) == 2);
  CHECK(dtype_size(DType::i64) == 8);
  CHECK(dtype_size(DType::u8) == 1);
  CHECK_THROWS_WITH(dtype_from_name("f64"), Catch::Contains("unknown dtype 'f64'"));
}

TEST_CASE("bf16 rounds to nearest even", "[dtype]") {
  CHECK(float_to_bf16(1.0f) == 0x3f80);
  // 1 + 2^-8 is exactly halfway between 1 and 1 + 2^-7: ties to even (1.0).
  CHECK(float_to_bf16(bits_float(0x3f808000u)) == 0x3f80);
  // 1 + 3*2^-8 is halfway between 1+2^-7 (odd) and 1+2^-6 (even): rounds up.
  CHECK(float_to_bf16(bits_float(0x3f818000u)) == 0x3f82);
  // Just above halfway rounds up.
  CHECK(float_to_bf16(bits_float(0x3f808001u)) == 0x3f81);
  CHECK(std::isnan(bf16_to_float(float_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  CHECK(std::isinf(bf16_to_float(float_to_bf16(std::numeric_limits<float>::infinity()))));
  // Largest finite float rounds to infinity in bf16 (as IEEE rounding says).
  CHECK(std::isinf(bf16_to_float(float_to_bf16(std::numeric_limits<float>::max()))));
  for (float v : {0.0f, -2.5f, 3.140625f, 1e-30f, -65504.0f}) {
    const float back = bf16_to_float(float_to_bf16(v));
    CHECK(std::fabs(back - v) <= std::fabs(v) * (1.0f / 256.0f));
  }
}

TEST_CASE("f16 conversion: exact values, ties to even, subnormals, overflow", "[dtype]") {
  CHECK(float_to_f16(1.0f) == 0x3c00);
  CHECK(float_to_f16(-2.0f) == 0xc000);
  CHECK(float_to_f16(65504.0f) == 0x7bff);
  CHECK(float_to_f16(65520.0f) == 0x7c00);  // halfway to 65536 rounds to even (inf)
  CHECK(float_to_f16(65519.0f) == 0x7bff);
  CHECK(float_to_f16(5.9604644775390625e-08f) == 0x0001);   // smallest subnormal
  CHECK(float_to_f16(2.98023223876953125e-08f) == 0x0000);  // half of it: ties to even (0)
  CHECK(float_to_f16(4.0e-08f) == 0x0001);
  // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to even (1.0).
  CHECK(float_to_f16(1.0f + 1.0f / 2048.0f) == 0x3c00);
  CHECK(float_to_f16(1.0f + 3.0f / 2048.0f) == 0x3c02);
  CHECK(std::isnan(f16_to_float(float_to_f16(std::numeric_limits<float>::quiet_NaN()))));
  // Every finite f16 value round-trips exactly.
  for (uint32_t h = 0; h < 0x10000u; ++h) {
    if ((h & 0x7c00u) == 0x7c00u) continue;
    const float f = f16_to_float(static_cast<uint16_t>(h));
    if (f == 0.0f && h == 0x8000u) continue;  // -0 maps to -0 too, checked by bits below
    REQUIRE(float_to_f16(f) == h);
  }
  CHECK(float_to_f16(-0.0f) == 0x8000);
}
