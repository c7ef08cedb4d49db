#include "dtrain/nn/layers.h"
#include "dtrain/ops.h"

namespace dtrain::nn {

CausalSelfAttention::CausalSelfAttention(int64_t channels, int64_t num_heads, Device device, DType dtype)
    : Module("CausalSelfAttention", device, dtype),
      qkv(channels, 3 * channels, true, device, dtype),
      proj(channels, channels, true, device, dtype),
      channels_(channels),
      num_heads_(num_heads) {
  DTRAIN_CHECK(num_heads > 0 && channels % num_heads == 0, "CausalSelfAttention: ", num_heads,
               " heads do not divide the width ", channels, "; pick a head count that divides it");
  add_module("qkv", qkv);
  add_module("proj", proj);
}

const Tensor& CausalSelfAttention::forward(const Tensor& x) {
  run_hooks(HookPoint::pre_forward);
  DTRAIN_CHECK(x.defined() && x.dim() == 3 && x.size(2) == channels_, "CausalSelfAttention: input ", x.describe(),
               " must be [B, T, ", channels_, "]");
  const Tensor& q = qkv.forward(x);
  ensure(att_, x.shape());
  ensure(lse_, {x.size(0), num_heads_, x.size(1)}, DType::f32);
  ops::attention(att_, lse_, q, num_heads_);
  const Tensor& out = proj.forward(att_);
  run_hooks(HookPoint::post_forward);
  return out;
}

void CausalSelfAttention::backward(const Tensor& dout, Tensor& dx) {
  run_hooks(HookPoint::pre_backward);
  ensure_zeroed(datt_, att_.shape());
  proj.backward(dout, datt_);
  ensure_zeroed(dqkv_, with_last_dim(att_.shape(), 3 * channels_));
  // qkv's output (kept by the Linear) is the attention input.
  ops::attention_backward(dqkv_, datt_, qkv.output(), att_, lse_, num_heads_);
  qkv.backward(dqkv_, dx);
  run_hooks(HookPoint::post_backward);
}

void CausalSelfAttention::release_activations() {
  Module::release_activations();
  att_ = Tensor();
  lse_ = Tensor();
  datt_ = Tensor();
  dqkv_ = Tensor();
}

}  // namespace dtrain::nn
