// Every case of the op registry (tests/op_cases) on the CPU backend, with
// each kernel set this machine runs (AVX2, AVX-512), against the case's naive
// reference in double: forward outputs against the reference, gradients
// against central finite differences of it (or, for cases too large for
// those, against the case's analytic reference). Outputs the op must write
// start as NaN, so an element left unwritten fails.
#include "op_case.h"
#include "op_test_util.h"

namespace dtrain::testing {
namespace {

using op_cases::Check;
using op_cases::OpCase;
using op_cases::Values;

void check_all(const std::vector<Check>& checks, const op_cases::Bound& bound, const Values& expected,
               const char* pass) {
  for (const Check& ch : checks) {
    INFO(pass << " tensor '" << ch.tensor << "'");
    const auto it = expected.find(ch.tensor);
    REQUIRE(it != expected.end());
    CHECK_CLOSE(bound.at(ch.tensor), it->second, ch.ref_tol, ch.ref_floor);
  }
}

void run_against_reference(const OpCase& c) {
  const bool backward_has_reference = !c.grads.empty() || static_cast<bool>(c.backward_reference);
  op_cases::Bound start = op_cases::bind(c, DType::f32, Device::cpu());
  const Values before = op_cases::values_of(c, start);
  const Values forward = op_cases::expected_forward(c, before);
  const Values backward = backward_has_reference ? op_cases::expected_backward(c, before) : Values{};
  for (const cpu::Isa isa : cpu_isas()) {
    const IsaScope scope(isa);
    INFO("op " << c.op << ", " << c.label << ", " << isa_name(isa));
    op_cases::Bound b = op_cases::bind(c, DType::f32, Device::cpu());
    c.forward(b);
    check_all(c.forward_checks, b, forward, "forward");
    if (!backward_has_reference) continue;
    if (c.backward) c.backward(b);
    check_all(c.backward_checks, b, backward, "backward");
  }
}

}  // namespace

TEST_CASE("every registered op case matches its naive reference and finite differences", "[ops][op_cases]") {
  const std::vector<op_cases::OpEntry> ops = op_cases::registry();
  // Every op of include/dtrain/ops.h has an entry.
  std::vector<std::string> names;
  for (const auto& e : ops) names.push_back(e.op);
  CHECK(names == std::vector<std::string>{"adamw", "add", "add_", "add_layernorm", "attention", "cast",
                                          "clip_coefficient", "embedding", "gelu", "global_norm_squared", "layernorm",
                                          "linear", "linear_gelu", "matmul", "matmul_dgelu_bgrad", "scale",
                                          "softmax_cross_entropy"});
  for (const auto& e : ops) {
    for (const OpCase& c : e.tests()) run_against_reference(c);
  }
}

}  // namespace dtrain::testing
