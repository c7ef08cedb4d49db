#include "dtrain/nn/module.h"

#include <algorithm>
#include <sstream>

namespace dtrain::nn {

Shape with_last_dim(const Shape& shape, int64_t last) {
  DTRAIN_CHECK(!shape.empty(), "with_last_dim needs at least one dimension");
  Shape s = shape;
  s.back() = last;
  return s;
}

Module::Module(std::string type_name, Device device, DType dtype)
    : type_name_(std::move(type_name)), device_(device), dtype_(dtype) {
  DTRAIN_CHECK(dtype == DType::f32 || dtype == DType::bf16 || dtype == DType::f16, type_name_,
               ": a module's dtype must be f32, bf16 or f16, got ", dtype_name(dtype));
}

Module::~Module() = default;

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out;
  out.emplace_back("", this);
  for (auto& [name, child] : children_) {
    for (auto& [sub, m] : child->named_modules())
      out.emplace_back(sub.empty() ? name : std::string(name).append(".").append(sub), m);
  }
  return out;
}

std::vector<Parameter*> Module::direct_parameters() const {
  std::vector<Parameter*> out;
  for (const auto& p : params_) out.push_back(p.get());
  return out;
}

void Module::collect_parameters(const std::string& prefix, std::vector<NamedParameter>& out) const {
  for (const auto& p : params_) out.push_back({prefix + p->name(), p.get()});
  for (const auto& [name, child] : children_) child->collect_parameters(prefix + name + ".", out);
}

std::vector<NamedParameter> Module::named_parameters() const {
  std::vector<NamedParameter> out;
  collect_parameters("", out);
  return out;
}

std::vector<Parameter*> Module::parameters() const {
  std::vector<Parameter*> out;
  for (auto& np : named_parameters()) out.push_back(np.param);
  return out;
}

Parameter& Module::parameter(const std::string& dotted_name) const {
  std::ostringstream known;
  for (auto& np : named_parameters()) {
    if (np.name == dotted_name) return *np.param;
    known << " " << np.name;
  }
  DTRAIN_THROW(type_name_, " has no parameter named '", dotted_name, "'; it has:", known.str());
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto* p : parameters()) n += p->numel();
  return n;
}

void Module::zero_grad() {
  for (auto* p : parameters()) {
    if (p->grad.defined()) p->grad.zero_();
  }
}

int Module::add_hook(HookPoint point, ModuleHook hook) {
  DTRAIN_CHECK(static_cast<bool>(hook), "add_hook: the hook is empty");
  hooks_.push_back({next_hook_id_, point, std::move(hook)});
  return next_hook_id_++;
}

int Module::add_grad_ready_hook(GradReadyHook hook) {
  DTRAIN_CHECK(static_cast<bool>(hook), "add_grad_ready_hook: the hook is empty");
  grad_hooks_.push_back({next_hook_id_, std::move(hook)});
  return next_hook_id_++;
}

void Module::remove_hook(int id) {
  const size_t before = hooks_.size() + grad_hooks_.size();
  hooks_.erase(std::remove_if(hooks_.begin(), hooks_.end(), [&](const HookEntry& e) { return e.id == id; }),
               hooks_.end());
  grad_hooks_.erase(
      std::remove_if(grad_hooks_.begin(), grad_hooks_.end(), [&](const GradHookEntry& e) { return e.id == id; }),
      grad_hooks_.end());
  DTRAIN_CHECK(hooks_.size() + grad_hooks_.size() < before, "remove_hook: no hook with id ", id, " on this ",
               type_name_);
}

void Module::release_activations() {
  for (auto& [name, child] : children_) child->release_activations();
}

void Module::check_new_parameter_name(const std::string& name) const {
  DTRAIN_CHECK(name.find('.') == std::string::npos && !name.empty(), "parameter name '", name,
               "' must be non-empty and without dots");
  for (const auto& p : params_) DTRAIN_CHECK(p->name() != name, type_name_, " already has a parameter '", name, "'");
}

Parameter& Module::add_parameter(const std::string& name, Tensor value, bool weight_decay) {
  check_new_parameter_name(name);
  auto param = std::make_unique<Parameter>(name, std::move(value), weight_decay);
  param->grad = Tensor::zeros(param->shape(), param->dtype(), param->device());
  params_.push_back(std::move(param));
  return *params_.back();
}

namespace {
thread_local int deferred_depth = 0;
}  // namespace

DeferredInit::DeferredInit() {
  ++deferred_depth;
}
DeferredInit::~DeferredInit() {
  --deferred_depth;
}
bool DeferredInit::active() {
  return deferred_depth > 0;
}

void Module::init_parameter_slice(const std::string& name, Tensor& /*out*/, int64_t /*first_element*/) const {
  DTRAIN_THROW(type_name_, " cannot initialise parameter '", name,
               "' by slices (it does not implement init_parameter_slice); build it without DeferredInit");
}

Parameter& Module::create_parameter(const std::string& name, const Shape& shape, ParamInit init, bool weight_decay) {
  if (DeferredInit::active()) {
    check_new_parameter_name(name);
    params_.push_back(std::make_unique<Parameter>(name, shape, dtype_, device_, weight_decay));
    return *params_.back();
  }
  Tensor value =
      init == ParamInit::ones ? Tensor::full(shape, 1.0, dtype_, device_) : Tensor::zeros(shape, dtype_, device_);
  return add_parameter(name, std::move(value), weight_decay);
}

void Module::add_module(const std::string& name, Module& child) {
  DTRAIN_CHECK(name.find('.') == std::string::npos && !name.empty(), "module name '", name,
               "' must be non-empty and without dots");
  DTRAIN_CHECK(child.parent_ == nullptr, "module '", name, "' is already a child of another module");
  child.parent_ = this;
  children_.emplace_back(name, &child);
}

void Module::add_shared_parameter(Parameter& param) {
  shared_.push_back(&param);
}

void Module::run_hooks(HookPoint point) {
  for (auto& e : hooks_) {
    if (e.point == point) e.hook(*this);
  }
}

void Module::grad_ready(Parameter& param) {
  for (Module* m = this; m != nullptr; m = m->parent_) {
    for (auto& e : m->grad_hooks_) e.hook(param);
  }
}

Tensor& Module::ensure(Tensor& t, const Shape& shape, DType dtype) {
  if (!t.defined() || t.shape() != shape || t.dtype() != dtype || t.device() != device_) {
    t = Tensor::empty(shape, dtype, device_);
  }
  return t;
}

Tensor& Module::ensure_zeroed(Tensor& t, const Shape& shape, DType dtype) {
  ensure(t, shape, dtype);
  t.zero_();
  return t;
}

}  // namespace dtrain::nn
