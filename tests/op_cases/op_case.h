// The one registry of op cases (tests/op_cases/<op>.cpp, one file per op).
//
// Why one table: the reference tests (tests/ops), the CPU-vs-CUDA tests
// (tests/gpu/test_gpu_ops.cpp) and both op benchmarks (bench_cpu_ops,
// bench_cuda_ops) used to state each op's inputs, shapes and tolerances on
// their own, four times over. Here each op states once:
//   - its arguments: name, shape, dtype role and how they start (random,
//     given values, zeros, NaN for outputs that must be written, undefined for
//     a gradient that is skipped, or an alias of another argument: in place);
//   - how to run forward and backward on bound tensors (CPU or CUDA, any dtype);
//   - a naive reference in double for forward, and for backward either the
//     gradients to take by central finite differences of that reference or an
//     analytic reference (cases too large for finite differences);
//   - tolerances: against the reference (CPU f32), and CPU-vs-CUDA per dtype
//     (f32 and bf16 stated, f16 derived by tests/compare.h's tolerance_for);
//   - FLOPs and bytes (read + written) of forward and backward, for the
//     benchmarks, and which library dtrain calls for it on each backend.
// Adding an op: one file here (its cases and its benchmark shapes) plus its
// kernels. Nothing in this folder is part of libdtrain.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "dtrain/tensor.h"

namespace dtrain::op_cases {

using Vec = std::vector<double>;
using Values = std::map<std::string, Vec>;

// The dtype an argument is stored in: `data` follows the dtype the case runs
// in; the others are fixed (statistics stay f32, tokens are i32, ...).
enum class Role { data, f32, bf16, f16, i32 };

enum class Init {
  uniform,    // random in [lo, hi), deterministic for the seed, representable in f32
  values,     // the given values
  zeros,      //
  nan,        // an output the op must write in full
  undefined,  // an optional tensor left out (a skipped gradient, no bias)
  alias,      // the same tensor as another argument (in place)
  host,       // not bound to a tensor: a weight the reference needs
};

struct Arg {
  std::string name;
  Shape shape;
  Role role = Role::data;
  Init init = Init::uniform;
  double lo = -1.0, hi = 1.0;
  uint32_t seed = 0;
  Vec values;            // Init::values and Init::host
  std::string alias_of;  // Init::alias
  int64_t offset = 0;    // > 0: a view that many elements into its block (misaligned)
};

Arg uniform(const std::string& name, const Shape& shape, uint32_t seed, double lo = -1.0, double hi = 1.0,
            Role role = Role::data);
Arg given(const std::string& name, const Shape& shape, Vec values, Role role = Role::data);
Arg zeros(const std::string& name, const Shape& shape, Role role = Role::data);
Arg written(const std::string& name, const Shape& shape, Role role = Role::data);
Arg undefined(const std::string& name);
Arg alias(const std::string& name, const std::string& of);
Arg host(const std::string& name, Vec values);

// One compared tensor. ref_*: the CPU op (f32) against the double reference.
// f32_tol / bf16_tol / floor: the CUDA op against the CPU op, per dtype.
struct Check {
  std::string tensor;
  double ref_tol = 1e-5;
  double f32_tol = 1e-5;
  double bf16_tol = 1e-2;
  double floor = 1.0;
  double ref_floor = 1.0;
};

// grad after backward = (its start unless it is written) + d/d(wrt) of
// sum(weight * reference(...)[output]), by central finite differences.
struct Grad {
  std::string grad, wrt, output, weight;
};

// The tensors of one case, by argument name.
class Bound {
 public:
  Tensor& operator[](const std::string& name);
  const Tensor& at(const std::string& name) const;
  std::map<std::string, Tensor> tensors;
};

using Run = std::function<void(Bound&)>;
using Reference = std::function<Values(const Values&)>;

struct OpCase {
  std::string op;     // as named in include/dtrain/ops.h, src/ops, src/ops/cpu, kernels
  std::string label;  // shape and options, for messages and benchmark lines
  std::vector<Arg> args;
  Run forward;
  Run backward;  // may be empty (forward-only ops, or fused as in softmax_cross_entropy)
  std::vector<Check> forward_checks, backward_checks;
  Reference reference;                                             // expected forward_checks tensors after forward
  std::vector<Grad> grads;                                         // backward_checks by finite differences ...
  Reference backward_reference;                                    // ... or stated directly (large cases)
  std::vector<DType> dtypes{DType::f32, DType::bf16, DType::f16};  // CPU-vs-CUDA runs
  bool on_cuda = true;                                             // compared on CUDA at all
  // Benchmark figures (bytes read + written; FLOPs), 0 when not stated.
  std::function<double(DType)> forward_bytes, backward_bytes;
  double forward_flops = 0.0, backward_flops = 0.0;
  std::string cpu_library, cuda_library;  // what dtrain calls for it, when it calls a library
};

// Benchmark scale: each op derives its shapes from it.
struct BenchScale {
  int64_t elements;  // of one activation tensor
  int64_t channels;  // rows of `channels` for the row-wise ops
  int64_t vocab;     // softmax_cross_entropy's row width
  bool quick;
  bool cuda;
  std::vector<std::array<int64_t, 3>> gemm_shapes;  // matmul: M x N x K
  std::vector<int64_t> attention_seq_lens;          // attention: T at B x 12 heads of 64
  int64_t attention_batch = 8;
};

struct OpEntry {
  std::string op;
  std::function<std::vector<OpCase>()> tests;
  std::function<std::vector<OpCase>(const BenchScale&)> bench;  // memory-bound figures; may be empty
};

// Called once per op file at static initialisation; returns true.
bool register_op(OpEntry entry);
// Every registered op, sorted by name.
std::vector<OpEntry> registry();
// The test cases of one op ("" = every op).
std::vector<OpCase> test_cases(const std::string& op = "");
// The benchmark cases of every op at a scale.
std::vector<OpCase> bench_cases(const BenchScale& scale);

// The case's tensors on `device`, `data` arguments in `dtype`. widen: store
// them as f32 holding values rounded through `dtype` (the CPU oracle of a
// bf16/f16 CUDA run).
Bound bind(const OpCase& c, DType dtype, const Device& device, bool widen = false);
// Host doubles of every argument (host ones included), as bound now.
Values values_of(const OpCase& c, const Bound& bound);
// Expected forward_checks / backward_checks tensors, from the values before forward.
Values expected_forward(const OpCase& c, const Values& before);
Values expected_backward(const OpCase& c, const Values& before);

// Bytes of n elements of a role in the case's dtype.
double bytes_of(Role role, DType dtype, double n);

}  // namespace dtrain::op_cases
