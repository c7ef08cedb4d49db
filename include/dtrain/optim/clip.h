// Global-norm gradient clipping.
//
// Single process: norm = grad_norm(opt.grads()); opt.step(lr, clip_scale(norm, max)).
// Sharded (ZeRO): each rank computes grad_norm_squared of its shard, the
// engine all-reduces the sum, then takes the square root.
#pragma once

#include <vector>

#include "dtrain/tensor.h"

namespace dtrain::optim {

// sum over all tensors of sum(g^2), on the host.
float grad_norm_squared(const std::vector<Tensor>& grads);
float grad_norm(const std::vector<Tensor>& grads);
// The factor that brings `norm` down to max_norm: min(1, max_norm / (norm + 1e-6)).
// max_norm <= 0 disables clipping (returns 1). A non-finite norm throws.
float clip_scale(float norm, float max_norm);
// Scales the gradients in place when their global norm exceeds max_norm;
// returns the norm before clipping.
float clip_grad_norm(std::vector<Tensor> grads, float max_norm);

}  // namespace dtrain::optim
