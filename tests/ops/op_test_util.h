// Helpers for the op tests: double-precision reference data, central finite
// differences and error-message checks.
//
// Every op is compared with a naive reference written in the test, evaluated
// in double. Backward ops are compared with central finite differences of
// L(x) = sum(dout * f(x)) taken on that double reference, so the only f32
// error in a comparison is the op's own.
#pragma once

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include "check_close.h"
#include "dtrain/ops.h"
#include "dtrain/tensor.h"
#include "ops/cpu/isa.h"
#include "test_support.h"

namespace dtrain::testing {

using Vec = std::vector<double>;

inline Vec to_vec(const Tensor& t) {
  return as_doubles(t);  // compare.h
}

inline Tensor from_vec(const Vec& v, const Shape& shape, DType dtype = DType::f32) {
  Tensor t = Tensor::empty(shape, dtype);
  REQUIRE(static_cast<int64_t>(v.size()) == t.numel());
  for (int64_t i = 0; i < t.numel(); ++i) t.set_item(i, v[static_cast<size_t>(i)]);
  return t;
}

inline Vec random_vec(size_t n, uint32_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  Vec v(n);
  for (double& x : v) x = static_cast<float>(dist(rng));  // representable in f32
  return v;
}

inline Vec sub(const Vec& a, const Vec& b) {
  Vec r(a.size());
  for (size_t i = 0; i < a.size(); ++i) r[i] = a[i] - b[i];
  return r;
}

// d/dx of sum(w * f(x)) by central differences (double precision).
inline Vec fd_grad(const std::function<Vec(const Vec&)>& f, Vec x, const Vec& w, double h = 1e-5) {
  Vec g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const Vec fp = f(x);
    x[i] = x0 - h;
    const Vec fm = f(x);
    x[i] = x0;
    double s = 0.0;
    for (size_t j = 0; j < w.size(); ++j) s += w[j] * (fp[j] - fm[j]);
    g[i] = s / (2.0 * h);
  }
  return g;
}

// Runs f, which must throw dtrain::Error whose message contains every part.
template <typename F>
void check_error(F&& f, std::initializer_list<std::string> parts) {
  bool thrown = false;
  try {
    f();
  } catch (const dtrain::Error& e) {
    thrown = true;
    const std::string msg = e.what();
    for (const std::string& p : parts) {
      INFO("message: " << msg << "\nexpected to contain: " << p);
      CHECK(msg.find(p) != std::string::npos);
    }
  }
  INFO("expected a dtrain::Error containing " << *parts.begin());
  CHECK(thrown);
}

// A tensor that claims to live on cuda:0, over host memory of its own (so two
// of them never overlap). Never dereferenced: validation rejects the call, or
// (in builds without CUDA) the dispatch throws, before any backend runs.
inline Tensor fake_cuda(const Shape& shape, DType dtype = DType::f32) {
  auto* backing = new char[static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype) + 1];
  return Tensor::from_blob(backing, shape, dtype, Device::cuda(0), [](void* p) { delete[] static_cast<char*>(p); });
}

// The CPU kernel sets this machine can run (AVX2 always; AVX-512 where present).
inline std::vector<cpu::Isa> cpu_isas() {
  std::vector<cpu::Isa> isas{cpu::Isa::avx2};
  if (cpu::avx512_available()) isas.push_back(cpu::Isa::avx512);
  return isas;
}

// Runs the CPU backend with one kernel set for a scope, then the best again.
class IsaScope {
 public:
  explicit IsaScope(cpu::Isa isa) { cpu::force_isa(isa); }
  ~IsaScope() { cpu::force_isa(cpu::Isa::avx512); }
  IsaScope(const IsaScope&) = delete;
  IsaScope& operator=(const IsaScope&) = delete;
};

inline const char* isa_name(cpu::Isa isa) {
  return isa == cpu::Isa::avx2 ? "avx2" : "avx512";
}

}  // namespace dtrain::testing
