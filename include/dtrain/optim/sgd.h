// SGD with (heavy-ball) momentum and decoupled weight decay:
//   p *= 1 - lr * wd;  buf = momentum * buf + grad_scale * g;  p -= lr * buf.
#pragma once

#include "dtrain/optim/optimizer.h"

namespace dtrain::optim {

class SGD : public Optimizer {
 public:
  SGD(std::vector<ParamGroup> groups, float momentum = 0.9f);
  void step(float lr, float grad_scale = 1.0f) override;
  std::vector<std::pair<std::string, Tensor>> state() override;
  void init_state() override;
  float momentum() const { return momentum_; }

 private:
  float momentum_;
  std::vector<std::vector<Tensor>> buffers_;
};

}  // namespace dtrain::optim
