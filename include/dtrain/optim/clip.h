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
#if defined(__CUDACC__)
#define DTRAIN_CLIP_HOST_DEVICE __host__ __device__
#else
#define DTRAIN_CLIP_HOST_DEVICE
#endif

// The factor that brings a finite `norm` down to max_norm: min(1, max_norm /
// (norm + 1e-6)); 1 when max_norm <= 0. One definition for the host
// (clip_scale) and the device (ops::clip_coefficient), so both round alike.
DTRAIN_CLIP_HOST_DEVICE inline float clip_factor(float norm, float max_norm) {
  return (max_norm <= 0.0f || norm <= max_norm) ? 1.0f : max_norm / (norm + 1e-6f);
}

// clip_factor, for a norm on the host. A non-finite norm throws.
float clip_scale(float norm, float max_norm);
// Scales the gradients in place when their global norm exceeds max_norm;
// returns the norm before clipping.
float clip_grad_norm(std::vector<Tensor> grads, float max_norm);

}  // namespace dtrain::optim
