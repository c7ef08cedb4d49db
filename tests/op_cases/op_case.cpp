// The registry's storage, argument binding and the finite-difference
// reference shared by every op case (op_case.h says why the registry exists).
#include "op_case.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <utility>

#include "dtrain/error.h"
#include "dtrain/ops.h"

namespace dtrain::op_cases {

Arg uniform(const std::string& name, const Shape& shape, uint32_t seed, double lo, double hi, Role role) {
  Arg a;
  a.name = name;
  a.shape = shape;
  a.role = role;
  a.seed = seed;
  a.lo = lo;
  a.hi = hi;
  return a;
}

Arg given(const std::string& name, const Shape& shape, Vec values, Role role) {
  Arg a;
  a.name = name;
  a.shape = shape;
  a.role = role;
  a.init = Init::values;
  a.values = std::move(values);
  return a;
}

Arg zeros(const std::string& name, const Shape& shape, Role role) {
  Arg a;
  a.name = name;
  a.shape = shape;
  a.role = role;
  a.init = Init::zeros;
  return a;
}

Arg written(const std::string& name, const Shape& shape, Role role) {
  Arg a = zeros(name, shape, role);
  a.init = Init::nan;
  return a;
}

Arg undefined(const std::string& name) {
  Arg a;
  a.name = name;
  a.init = Init::undefined;
  return a;
}

Arg alias(const std::string& name, const std::string& of) {
  Arg a;
  a.name = name;
  a.init = Init::alias;
  a.alias_of = of;
  return a;
}

Arg host(const std::string& name, Vec values) {
  Arg a;
  a.name = name;
  a.init = Init::host;
  a.values = std::move(values);
  return a;
}

Tensor& Bound::operator[](const std::string& name) {
  auto it = tensors.find(name);
  DTRAIN_CHECK(it != tensors.end(), "op case: no argument named '", name, "'");
  return it->second;
}

const Tensor& Bound::at(const std::string& name) const {
  auto it = tensors.find(name);
  DTRAIN_CHECK(it != tensors.end(), "op case: no argument named '", name, "'");
  return it->second;
}

namespace {

std::map<std::string, OpEntry>& table() {
  static std::map<std::string, OpEntry> entries;
  return entries;
}

DType dtype_of(Role role, DType data) {
  switch (role) {
    case Role::f32:
      return DType::f32;
    case Role::bf16:
      return DType::bf16;
    case Role::f16:
      return DType::f16;
    case Role::i32:
      return DType::i32;
    case Role::data:
      break;
  }
  return data;
}

// The argument's starting values in a host f32 (or i32) tensor.
Tensor host_start(const Arg& a) {
  const DType host_dtype = a.role == Role::i32 ? DType::i32 : DType::f32;
  switch (a.init) {
    case Init::zeros:
      return Tensor::zeros(a.shape, host_dtype);
    case Init::nan:
      return Tensor::full(a.shape, host_dtype == DType::i32 ? 0.0 : NAN, host_dtype);
    case Init::values: {
      Tensor t = Tensor::empty(a.shape, host_dtype);
      DTRAIN_CHECK(static_cast<int64_t>(a.values.size()) == t.numel(), "op case: argument '", a.name, "' has ",
                   a.values.size(), " values for ", t.numel(), " elements");
      for (int64_t i = 0; i < t.numel(); ++i) t.set_item(i, a.values[static_cast<size_t>(i)]);
      return t;
    }
    default:
      break;
  }
  Tensor t = Tensor::empty(a.shape, DType::f32);
  std::mt19937 rng(a.seed);
  std::uniform_real_distribution<double> dist(a.lo, a.hi);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<float>(dist(rng));
  return t;
}

Tensor bind_one(const Arg& a, DType data, const Device& device, bool widen) {
  const Tensor start = host_start(a);
  const DType stored = dtype_of(a.role, data);
  // Values rounded through the dtype, kept as f32 when widening a data argument.
  Tensor host = start;
  if (stored != start.dtype()) {
    host = Tensor::empty(a.shape, stored);
    ops::cast(host, start);
    if (widen && a.role == Role::data) {
      Tensor back = Tensor::empty(a.shape, DType::f32);
      ops::cast(back, host);
      host = back;
    }
  }
  if (a.offset == 0) return device.is_cpu() ? host : host.to(device);
  Tensor block = Tensor::zeros({host.numel() + a.offset}, host.dtype(), device);
  Tensor view = block.narrow(a.offset, host.numel()).reshape(a.shape);
  view.copy_(device.is_cpu() ? host : host.to(device));
  return view;
}

}  // namespace

bool register_op(OpEntry entry) {
  std::string name = entry.op;
  table()[name] = std::move(entry);
  return true;
}

std::vector<OpEntry> registry() {
  std::vector<OpEntry> out;
  for (const auto& [name, e] : table()) out.push_back(e);
  return out;
}

std::vector<OpCase> test_cases(const std::string& op) {
  std::vector<OpCase> out;
  for (const auto& [name, e] : table()) {
    if (!op.empty() && name != op) continue;
    for (OpCase& c : e.tests()) out.push_back(std::move(c));
  }
  DTRAIN_CHECK(!out.empty(), "op case registry: no cases for op '", op, "'");
  return out;
}

std::vector<OpCase> bench_cases(const BenchScale& scale) {
  std::vector<OpCase> out;
  for (const auto& [name, e] : table()) {
    if (!e.bench) continue;
    for (OpCase& c : e.bench(scale)) out.push_back(std::move(c));
  }
  return out;
}

Bound bind(const OpCase& c, DType dtype, const Device& device, bool widen) {
  Bound b;
  for (const Arg& a : c.args) {
    if (a.init == Init::host) continue;
    if (a.init == Init::undefined) {
      b.tensors[a.name] = Tensor();
    } else if (a.init == Init::alias) {
      b.tensors[a.name] = b[a.alias_of];  // the same storage
    } else {
      b.tensors[a.name] = bind_one(a, dtype, device, widen);
    }
  }
  return b;
}

Values values_of(const OpCase& c, const Bound& bound) {
  Values v;
  for (const Arg& a : c.args) {
    if (a.init == Init::host) {
      v[a.name] = a.values;
      continue;
    }
    const Tensor& t = bound.at(a.name);
    if (!t.defined()) continue;
    const Tensor h = t.device().is_cpu() ? t : t.to(Device::cpu());
    Vec& out = v[a.name];
    out.resize(static_cast<size_t>(h.numel()));
    for (int64_t i = 0; i < h.numel(); ++i) out[static_cast<size_t>(i)] = h.item(i);
  }
  return v;
}

Values expected_forward(const OpCase& c, const Values& before) {
  DTRAIN_CHECK(static_cast<bool>(c.reference), "op case ", c.op, " ", c.label, " has no reference");
  return c.reference(before);
}

Values expected_backward(const OpCase& c, const Values& before) {
  if (c.backward_reference) return c.backward_reference(before);
  Values out;
  const double h = 1e-5;
  for (const Grad& g : c.grads) {
    Values in = before;
    Vec& x = in.at(g.wrt);
    const Vec& w = before.at(g.weight);
    Vec grad(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      const double x0 = x[i];
      x[i] = x0 + h;
      const Vec plus = c.reference(in).at(g.output);
      x[i] = x0 - h;
      const Vec minus = c.reference(in).at(g.output);
      x[i] = x0;
      double s = 0.0;
      for (size_t j = 0; j < w.size(); ++j) s += w[j] * (plus[j] - minus[j]);
      grad[i] = s / (2.0 * h);
    }
    // Accumulated gradients keep their start; written ones (NaN start) do not.
    const auto start = before.find(g.grad);
    const bool accumulates = start != before.end() && !start->second.empty() && !std::isnan(start->second[0]);
    if (accumulates)
      for (size_t i = 0; i < grad.size(); ++i) grad[i] += start->second[i];
    out[g.grad] = std::move(grad);
  }
  return out;
}

double bytes_of(Role role, DType dtype, double n) {
  return n * static_cast<double>(dtype_size(dtype_of(role, dtype)));
}

}  // namespace dtrain::op_cases
