// The f32 stand-ins of run_cpu_in_f32 (cpu_low_precision.h): conversions in
// before a CPU kernel runs, rounding back after it.
#include "ops/cpu_low_precision.h"

#include "ops/backends.h"

namespace dtrain::ops::detail {
namespace {

Tensor widened(const Tensor& t) {
  Tensor f = Tensor::empty(t.shape(), DType::f32, t.device());
  cpu::cast(f, t);
  return f;
}

}  // namespace

const Tensor& CpuF32Call::input(const Tensor& t) {
  if (!t.defined() || !is_low_precision(t.dtype())) return t;
  return temps_.emplace_back(widened(t));
}

Tensor& CpuF32Call::output(Tensor& t) {
  if (!t.defined() || !is_low_precision(t.dtype())) return t;
  Tensor& f = temps_.emplace_back(widened(t));  // current values: backward ops add into them
  outputs_.emplace_back(t, f);
  return f;
}

const std::vector<Tensor>& CpuF32Call::inputs(const std::vector<Tensor>& list) {
  std::vector<Tensor>& out = lists_.emplace_back();
  out.reserve(list.size());
  for (const Tensor& t : list) out.push_back(input(t));
  return out;
}

std::vector<AdamWTensor>& CpuF32Call::adamw_list(std::vector<AdamWTensor>& list) {
  std::vector<AdamWTensor>& out = adamw_lists_.emplace_back(list);
  // param_copy is the one low-precision output the kernel writes itself
  // (the rounding of the f32 master it just updated): passed as is.
  for (AdamWTensor& t : out) t.grad = input(t.grad);
  return out;
}

void CpuF32Call::write_back() {
  for (auto& [low, f32] : outputs_) cpu::cast(low, f32);
  outputs_.clear();
}

}  // namespace dtrain::ops::detail
