// adamw_step over several tensors and steps: cases, the update formula in
// double, benchmark shapes (a GPT-2-small-like parameter set).
#include <cmath>

#include "dtrain/ops.h"
#include "op_case.h"

namespace dtrain::op_cases {
namespace {

struct Tensor1 {
  int64_t n;
  float weight_decay;
  bool bf16_copy;
  int64_t offset;  // state views this many elements into their blocks (misaligned)
};

constexpr int kSteps = 3;

std::string key(const char* what, size_t i) {
  return std::string(what) + std::to_string(i);
}

// The gradient of tensor i at step k.
std::string grad_name(size_t i, int k, int steps) {
  return steps == 1 ? key("grad", i) : key("grad", i) + "_step" + std::to_string(k);
}

ops::AdamWConfig config_for(int64_t step) {
  ops::AdamWConfig cfg;
  cfg.lr = 1e-2f;
  cfg.grad_scale = 0.5f;
  cfg.step = step;
  return cfg;
}

// grad_role: the gradients' dtype (data: the case's). device_scale: the
// gradient scale comes from a [1] device tensor (AdamWConfig::
// device_grad_scale) holding config_for's grad_scale, with grad_scale 1, so
// the expected values are the same.
OpCase adamw_case(const std::vector<Tensor1>& list, Role grad_role, uint32_t seed, int steps,
                  bool device_scale = false) {
  OpCase c;
  c.op = "adamw";
  c.label = std::to_string(list.size()) + " tensors, " + std::to_string(steps) + " steps" +
            (device_scale ? ", scale on the device" : "");
  if (device_scale) c.args.push_back(given("device_scale", {1}, Vec{config_for(1).grad_scale}, Role::f32));
  double elements = 0.0;
  for (size_t i = 0; i < list.size(); ++i) {
    const Shape s{list[i].n};
    Arg p = uniform(key("param", i), s, seed++, -1.0, 1.0, Role::f32);
    Arg m = uniform(key("exp_avg", i), s, seed++, 0.0, 0.1, Role::f32);
    Arg v = uniform(key("exp_avg_sq", i), s, seed++, 0.0, 0.01, Role::f32);
    p.offset = m.offset = v.offset = list[i].offset;
    // One step: the gradient is bound as it is; more: a fresh one is copied in before each.
    c.args.insert(c.args.end(), {p, m, v, uniform(key("grad", i), s, seed++, -2.0, 2.0, grad_role)});
    for (int k = 1; steps > 1 && k <= steps; ++k)
      c.args.push_back(uniform(grad_name(i, k, steps), s, seed++, -2.0, 2.0, grad_role));
    c.args.push_back(list[i].bf16_copy ? written(key("param_copy", i), s, Role::bf16)
                                       : undefined(key("param_copy", i)));
    c.forward_checks.push_back({key("param", i), 1e-6, 1e-5, 1e-5});
    c.forward_checks.push_back({key("exp_avg", i), 1e-6, 1e-6, 1e-6});
    c.forward_checks.push_back({key("exp_avg_sq", i), 1e-6, 1e-6, 1e-6});
    if (list[i].bf16_copy) c.forward_checks.push_back({key("param_copy", i), 4e-3, 1e-2, 1e-2});
    elements += static_cast<double>(list[i].n);
  }
  c.forward = [list, steps, device_scale](Bound& b) {
    std::vector<ops::AdamWTensor> ts;
    for (size_t i = 0; i < list.size(); ++i)
      ts.push_back({b[key("param", i)], b[key("grad", i)], b[key("exp_avg", i)], b[key("exp_avg_sq", i)],
                    b[key("param_copy", i)], list[i].weight_decay});
    for (int k = 1; k <= steps; ++k) {
      for (size_t i = 0; steps > 1 && i < list.size(); ++i) ts[i].grad.copy_(b[grad_name(i, k, steps)]);
      ops::AdamWConfig cfg = config_for(k);
      if (device_scale) {
        cfg.grad_scale = 1.0f;
        cfg.device_grad_scale = b["device_scale"];
      }
      ops::adamw_step(ts, cfg);
    }
  };
  c.reference = [list, steps](const Values& in) {
    Values out;
    for (size_t i = 0; i < list.size(); ++i) {
      Vec p = in.at(key("param", i)), m = in.at(key("exp_avg", i)), v = in.at(key("exp_avg_sq", i));
      for (int k = 1; k <= steps; ++k) {
        const ops::AdamWConfig cfg = config_for(k);
        const Vec& g = in.at(grad_name(i, k, steps));
        const double bc1 = 1.0 - std::pow(static_cast<double>(cfg.beta1), k);
        const double bc2 = 1.0 - std::pow(static_cast<double>(cfg.beta2), k);
        for (size_t j = 0; j < p.size(); ++j) {
          const double gj = g[j] * cfg.grad_scale;
          m[j] = cfg.beta1 * m[j] + (1.0 - cfg.beta1) * gj;
          v[j] = cfg.beta2 * v[j] + (1.0 - cfg.beta2) * gj * gj;
          p[j] -= cfg.lr * ((m[j] / bc1) / (std::sqrt(v[j] / bc2) + cfg.eps) + list[i].weight_decay * p[j]);
        }
      }
      if (list[i].bf16_copy) out[key("param_copy", i)] = p;
      out[key("param", i)] = p;
      out[key("exp_avg", i)] = m;
      out[key("exp_avg_sq", i)] = v;
    }
    return out;
  };
  // Per element and step: param, moments read + written (f32), gradient read, bf16 copy written.
  c.forward_bytes = [elements, grad_role, steps](DType dt) {
    return steps * elements * (6 * 4.0 + bytes_of(grad_role, dt, 1.0) + 2.0);
  };
  return c;
}

const bool registered = register_op(
    {"adamw",
     [] {
       const std::vector<Tensor1> list = {{1, 0.0f, false, 0},      {4097, 0.1f, true, 0},   {7, 0.0f, true, 0},
                                          {10000, 0.01f, false, 0}, {100003, 0.1f, true, 0}, {5003, 0.05f, false, 1}};
       return std::vector<OpCase>{adamw_case(list, Role::data, 1, kSteps),
                                  adamw_case({{33, 0.01f, false, 0}}, Role::bf16, 200, 1),
                                  adamw_case({{4097, 0.1f, true, 0}, {7, 0.0f, false, 1}}, Role::data, 300, 2, true)};
     },
     [](const BenchScale& s) {
       // GPT-2-small-like tensors (124M parameters at full scale), bf16 gradients and bf16 copies.
       const int64_t vocab = 50304, ch = 768;
       std::vector<int64_t> sizes = s.quick ? std::vector<int64_t>{ch * 3 * ch, ch * ch, ch}
                                            : std::vector<int64_t>{ch * 3 * ch, ch * ch, ch * 4 * ch, 4 * ch * ch, ch};
       const int layers = s.quick ? 2 : 12;
       std::vector<Tensor1> list{{vocab * ch, 0.1f, true, 0}};
       if (!s.cuda) list = {{s.elements, 0.1f, true, 0}};  // the CPU figure: one tensor of the activation size
       for (int l = 0; s.cuda && l < layers; ++l)
         for (int64_t n : sizes) list.push_back({n, 0.1f, true, 0});
       OpCase c = adamw_case(list, s.cuda ? Role::bf16 : Role::f32, 1, 1);
       c.dtypes = {DType::f32};
       return std::vector<OpCase>{c};
     }});

}  // namespace
}  // namespace dtrain::op_cases
