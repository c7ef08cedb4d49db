// Internal: runs a CPU kernel, written for f32, on bf16 and f16 tensors.
//
// The CPU backend computes in f32 only; the CUDA backend takes bf16 and f16
// activations, weights and gradients. So that the whole mixed-precision
// control flow (casts, master weights, loss scaling, skipped steps) runs in
// CI on CPU, every CPU dispatch goes through run_cpu_in_f32():
//
//   run_cpu_in_f32(cpu::linear_backward, dx, dweight, dbias, dout, x, weight);
//
// Each argument is looked at by type:
//  - const Tensor& (an input) in bf16/f16: an f32 copy is passed instead;
//  - Tensor& (an output) in bf16/f16: an f32 copy of its current values is
//    passed (backward ops ADD into their gradients, and matmul's beta reads
//    `out`), and after the kernel the f32 result is rounded back into the
//    caller's tensor, once. So `dw += g` on a bf16 gradient is
//    round(float(dw) + g), not a sum of rounded partial products;
//  - const std::vector<Tensor>& (global_norm_squared): each bf16/f16 entry
//    converted as an input;
//  - std::vector<AdamWTensor>& (adamw_step): the gradient converted as an
//    input; param and the moments are f32 by contract, and the optional bf16
//    param_copy is written by the kernel itself (rounding the master it just
//    updated), so both pass through;
//  - anything else (f32 and i32 tensors, undefined tensors, scalars, flags)
//    is passed through untouched.
// The copies are separate buffers, so an op called in place (out aliasing an
// input) still reads its inputs before anything is written back.
// Rounding is to nearest-even (ops::cast), the same as on CUDA.
#pragma once

#include <deque>
#include <type_traits>
#include <utility>
#include <vector>

#include "dtrain/ops.h"

namespace dtrain::ops::detail {

// The f32 stand-ins of one call and the outputs to round back afterwards.
class CpuF32Call {
 public:
  CpuF32Call() = default;
  CpuF32Call(const CpuF32Call&) = delete;
  CpuF32Call& operator=(const CpuF32Call&) = delete;

  const Tensor& input(const Tensor& t);
  Tensor& output(Tensor& t);
  const std::vector<Tensor>& inputs(const std::vector<Tensor>& list);
  std::vector<AdamWTensor>& adamw_list(std::vector<AdamWTensor>& list);
  // Rounds every low-precision output back into the caller's tensor.
  void write_back();

 private:
  std::deque<Tensor> temps_;                        // a deque: references handed out stay valid
  std::vector<std::pair<Tensor, Tensor>> outputs_;  // (caller's tensor, its f32 stand-in)
  std::deque<std::vector<Tensor>> lists_;
  std::deque<std::vector<AdamWTensor>> adamw_lists_;
};

// True for the dtypes the adapter converts.
inline bool is_low_precision(DType dt) {
  return dt == DType::bf16 || dt == DType::f16;
}

template <typename Arg>
decltype(auto) f32_argument(CpuF32Call& call, Arg&& arg) {
  using Plain = std::remove_cv_t<std::remove_reference_t<Arg>>;
  constexpr bool is_const = std::is_const_v<std::remove_reference_t<Arg>>;
  if constexpr (std::is_same_v<Plain, Tensor>) {
    if constexpr (is_const) {
      return call.input(arg);
    } else {
      return call.output(arg);
    }
  } else if constexpr (std::is_same_v<Plain, std::vector<Tensor>>) {
    static_assert(is_const, "tensor lists are inputs");
    return call.inputs(arg);
  } else if constexpr (std::is_same_v<Plain, std::vector<AdamWTensor>>) {
    return call.adamw_list(arg);
  } else {
    return std::forward<Arg>(arg);
  }
}

// Calls kernel(args...) with bf16/f16 tensors replaced by f32 stand-ins (see
// the file comment), then rounds the outputs back.
template <typename Kernel, typename... Args>
void run_cpu_in_f32(Kernel&& kernel, Args&&... args) {
  CpuF32Call call;
  std::forward<Kernel>(kernel)(f32_argument(call, std::forward<Args>(args))...);
  call.write_back();
}

}  // namespace dtrain::ops::detail
