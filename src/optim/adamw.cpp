#include "dtrain/optim/adamw.h"

#include <map>

#include "dtrain/ops.h"

namespace dtrain::optim {

AdamW::AdamW(std::vector<ParamGroup> groups, AdamWOptions options) : Optimizer(std::move(groups)), options_(options) {
  DTRAIN_CHECK(options_.beta1 >= 0.0f && options_.beta1 < 1.0f && options_.beta2 >= 0.0f && options_.beta2 < 1.0f,
               "AdamW: betas must lie in [0, 1), got ", options_.beta1, ", ", options_.beta2);
}

void AdamW::init_state() {
  if (!moments_.empty()) return;
  for (auto& g : groups_) {
    auto& m = moments_.emplace_back();
    for (auto& p : g.params) {
      m.emplace_back(Tensor::zeros(p.value.shape(), DType::f32, p.value.device()),
                     Tensor::zeros(p.value.shape(), DType::f32, p.value.device()));
    }
  }
}

void AdamW::step(float lr, float grad_scale) {
  update(lr, grad_scale, Tensor());
}

void AdamW::step_scaled_by(float lr, const Tensor& device_grad_scale) {
  DTRAIN_CHECK(device_grad_scale.defined(), "AdamW::step_scaled_by: the gradient scale tensor is undefined");
  update(lr, 1.0f, device_grad_scale);
}

void AdamW::update(float lr, float grad_scale, const Tensor& device_grad_scale) {
  init_state();
  ++steps_;
  // Groups that share an lr scale go into one multi-tensor call.
  std::map<float, std::vector<ops::AdamWTensor>> by_scale;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    auto& g = groups_[gi];
    for (size_t pi = 0; pi < g.params.size(); ++pi) {
      ops::AdamWTensor t;
      t.param = g.params[pi].value;
      t.grad = g.params[pi].grad;
      t.exp_avg = moments_[gi][pi].first;
      t.exp_avg_sq = moments_[gi][pi].second;
      t.weight_decay = g.weight_decay;
      by_scale[g.lr_scale].push_back(std::move(t));
    }
  }
  for (auto& [scale, tensors] : by_scale) {
    ops::AdamWConfig c;
    c.lr = lr * scale;
    c.beta1 = options_.beta1;
    c.beta2 = options_.beta2;
    c.eps = options_.eps;
    c.step = steps_;
    c.grad_scale = grad_scale;
    c.device_grad_scale = device_grad_scale;
    ops::adamw_step(tensors, c);
  }
}

std::vector<std::pair<std::string, Tensor>> AdamW::state() {
  init_state();
  std::vector<std::pair<std::string, Tensor>> out;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    for (size_t pi = 0; pi < groups_[gi].params.size(); ++pi) {
      out.emplace_back(groups_[gi].params[pi].name + ".exp_avg", moments_[gi][pi].first);
      out.emplace_back(groups_[gi].params[pi].name + ".exp_avg_sq", moments_[gi][pi].second);
    }
  }
  return out;
}

}  // namespace dtrain::optim
