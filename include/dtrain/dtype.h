// Element types and the CPU conversions for the 16-bit floating formats.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

namespace dtrain {

enum class DType : uint8_t { f32, bf16, f16, i32, i64, u8, u16 };

// Size of one element in bytes.
size_t dtype_size(DType dtype);
// Short name as written in messages and files: "f32", "bf16", ...
const char* dtype_name(DType dtype);
// Parses a name produced by dtype_name; throws dtrain::Error otherwise.
DType dtype_from_name(const std::string& name);
bool is_floating(DType dtype);

// ---- bf16 / f16 on the CPU --------------------------------------------------
// Both conversions round to nearest, ties to even, and keep NaN a NaN.

inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}
inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

inline uint16_t float_to_bf16(float f) {
  uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // quiet NaN
  const uint32_t lsb = (u >> 16) & 1u;
  u += 0x7fffu + lsb;
  return static_cast<uint16_t>(u >> 16);
}
inline float bf16_to_float(uint16_t h) {
  return bits_float(static_cast<uint32_t>(h) << 16);
}

uint16_t float_to_f16(float f);
float f16_to_float(uint16_t h);

// Host-side storage types, so that tensors of 16-bit floats are typed in C++.
struct bf16_t {
  uint16_t bits = 0;
  bf16_t() = default;
  explicit bf16_t(float f) : bits(float_to_bf16(f)) {}
  explicit operator float() const { return bf16_to_float(bits); }
};
struct f16_t {
  uint16_t bits = 0;
  f16_t() = default;
  explicit f16_t(float f) : bits(float_to_f16(f)) {}
  explicit operator float() const { return f16_to_float(bits); }
};

// Maps a C++ type to its DType (dtype_of<float>() == DType::f32).
template <typename T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
  return DType::f32;
}
template <>
constexpr DType dtype_of<bf16_t>() {
  return DType::bf16;
}
template <>
constexpr DType dtype_of<f16_t>() {
  return DType::f16;
}
template <>
constexpr DType dtype_of<int32_t>() {
  return DType::i32;
}
template <>
constexpr DType dtype_of<int64_t>() {
  return DType::i64;
}
template <>
constexpr DType dtype_of<uint8_t>() {
  return DType::u8;
}
template <>
constexpr DType dtype_of<uint16_t>() {
  return DType::u16;
}

}  // namespace dtrain
