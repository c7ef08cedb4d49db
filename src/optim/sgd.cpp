#include "dtrain/optim/sgd.h"

#include "dtrain/ops.h"

namespace dtrain::optim {

SGD::SGD(std::vector<ParamGroup> groups, float momentum) : Optimizer(std::move(groups)), momentum_(momentum) {
  DTRAIN_CHECK(momentum >= 0.0f && momentum < 1.0f, "SGD: momentum must lie in [0, 1), got ", momentum);
}

void SGD::init_state() {
  if (!buffers_.empty()) return;
  for (auto& g : groups_) {
    auto& b = buffers_.emplace_back();
    for (auto& p : g.params) b.push_back(Tensor::zeros(p.value.shape(), DType::f32, p.value.device()));
  }
}

void SGD::step(float lr, float grad_scale) {
  init_state();
  ++steps_;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    auto& g = groups_[gi];
    const float group_lr = lr * g.lr_scale;
    for (size_t pi = 0; pi < g.params.size(); ++pi) {
      Tensor& p = g.params[pi].value;
      Tensor& buf = buffers_[gi][pi];
      if (g.weight_decay != 0.0f) ops::scale(p, p, 1.0f - group_lr * g.weight_decay);
      ops::scale(buf, buf, momentum_);
      ops::add_(buf, g.params[pi].grad, grad_scale);
      ops::add_(p, buf, -group_lr);
    }
  }
}

std::vector<std::pair<std::string, Tensor>> SGD::state() {
  init_state();
  std::vector<std::pair<std::string, Tensor>> out;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    for (size_t pi = 0; pi < groups_[gi].params.size(); ++pi) {
      out.emplace_back(groups_[gi].params[pi].name + ".momentum", buffers_[gi][pi]);
    }
  }
  return out;
}

}  // namespace dtrain::optim
