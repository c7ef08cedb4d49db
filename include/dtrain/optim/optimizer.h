// Optimizers work on lists of (value, grad) tensor pairs grouped by
// hyper-parameters, not on modules, so that the data-parallel engine can hand
// them flat shards (views into its buckets) as easily as whole parameters.
//
// The pairs are tensor handles taken when the optimizer is built: rebind
// parameters (Parameter::rebind) BEFORE building the optimizer, or replace
// the pairs through groups(). Optimizer state is created on the first step,
// on each value's device and with its shape.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "dtrain/tensor.h"

namespace dtrain::nn {
class Module;
}

namespace dtrain::optim {

struct ParamRef {
  Tensor value;      // f32 master weights (updated in place)
  Tensor grad;       // same shape and device
  std::string name;  // for messages and state names
};

struct ParamGroup {
  std::string name;
  std::vector<ParamRef> params;
  float weight_decay = 0.0f;
  float lr_scale = 1.0f;  // this group's lr = schedule lr * lr_scale
};

// Two groups from a module's parameters: "decay" (Parameter::weight_decay(),
// i.e. matrices and embeddings) with `weight_decay`, and "no_decay" (biases,
// LayerNorm gains) with 0. Empty groups are left out.
std::vector<ParamGroup> param_groups(const nn::Module& module, float weight_decay);

class Optimizer {
 public:
  explicit Optimizer(std::vector<ParamGroup> groups);
  virtual ~Optimizer() = default;

  // One update of every pair. Gradients are multiplied by grad_scale first
  // (clipping, loss-scale undo), so clipping costs no extra pass.
  virtual void step(float lr, float grad_scale = 1.0f) = 0;
  // The same update with gradients multiplied by device_grad_scale[0] (f32
  // [1] on the parameters' device, e.g. a clip coefficient computed there).
  // An optimizer whose update reads it on the device overrides this and
  // reads_scale_on_device(); the default reads it to the host first (one
  // device-to-host copy).
  virtual void step_scaled_by(float lr, const Tensor& device_grad_scale);
  virtual bool reads_scale_on_device() const { return false; }
  // Named state tensors ("<param name>.exp_avg", ...) for checkpoints; they
  // are the live buffers (load by copy_ into them after one step(0) or
  // after init_state()).
  virtual std::vector<std::pair<std::string, Tensor>> state() = 0;
  // Allocates the state now instead of at the first step.
  virtual void init_state() = 0;

  int64_t steps_done() const { return steps_; }
  void set_steps_done(int64_t steps) { steps_ = steps; }
  std::vector<ParamGroup>& groups() { return groups_; }
  const std::vector<ParamGroup>& groups() const { return groups_; }
  // Every gradient tensor, in group order (for norms and zeroing).
  std::vector<Tensor> grads() const;
  void zero_grad();

 protected:
  std::vector<ParamGroup> groups_;
  int64_t steps_ = 0;
};

}  // namespace dtrain::optim
