#include "dtrain/optim/optimizer.h"

#include "dtrain/nn/module.h"

namespace dtrain::optim {

std::vector<ParamGroup> param_groups(const nn::Module& module, float weight_decay) {
  ParamGroup decay{"decay", {}, weight_decay, 1.0f};
  ParamGroup no_decay{"no_decay", {}, 0.0f, 1.0f};
  for (auto& np : module.named_parameters()) {
    ParamRef ref{np.param->require_value(), np.param->require_grad(), np.name};
    (np.param->weight_decay() ? decay : no_decay).params.push_back(ref);
  }
  std::vector<ParamGroup> groups;
  if (!decay.params.empty()) groups.push_back(std::move(decay));
  if (!no_decay.params.empty()) groups.push_back(std::move(no_decay));
  return groups;
}

Optimizer::Optimizer(std::vector<ParamGroup> groups) : groups_(std::move(groups)) {
  for (auto& g : groups_) {
    for (auto& p : g.params) {
      DTRAIN_CHECK(p.value.defined() && p.grad.defined(), "optimizer: parameter '", p.name, "' of group '", g.name,
                   "' needs a defined value and grad");
      DTRAIN_CHECK(p.value.shape() == p.grad.shape() && p.value.device() == p.grad.device(), "optimizer: parameter '",
                   p.name, "' has value ", p.value.describe(), " but grad ", p.grad.describe());
      DTRAIN_CHECK(p.value.dtype() == DType::f32, "optimizer: parameter '", p.name,
                   "' must hold f32 master weights, got ", p.value.describe());
    }
  }
}

void Optimizer::step_scaled_by(float lr, const Tensor& device_grad_scale) {
  step(lr, static_cast<float>(device_grad_scale.to(Device::cpu()).item(0)));
}

std::vector<Tensor> Optimizer::grads() const {
  std::vector<Tensor> out;
  for (auto& g : groups_) {
    for (auto& p : g.params) out.push_back(p.grad);
  }
  return out;
}

void Optimizer::zero_grad() {
  for (auto& g : groups_) {
    for (auto& p : g.params) p.grad.zero_();
  }
}

}  // namespace dtrain::optim
