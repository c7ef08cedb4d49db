// nn::Block: the pre-LayerNorm transformer block, its activation
// checkpointing and its layernorm recompute.
#include <memory>

#include "dtrain/nn/layers.h"
#include "dtrain/ops.h"

namespace dtrain::nn {

Block::Block(int64_t channels, int64_t num_heads, Device device, DType dtype)
    : Module("Block", device, dtype),
      ln1(channels, device, dtype),
      attn(channels, num_heads, device, dtype),
      ln2(channels, device, dtype),
      mlp(channels, 4 * channels, device, dtype) {
  add_module("ln1", ln1);
  add_module("attn", attn);
  add_module("ln2", ln2);
  add_module("mlp", mlp);
}

void Block::set_recompute_layernorm(bool on, std::shared_ptr<Tensor> shared_output) {
  if (on && shared_output == nullptr) shared_output = std::make_shared<Tensor>();
  if (!on) shared_output = nullptr;
  ln1.set_recompute(shared_output);
  ln2.set_recompute(shared_output);
}

void Block::compute(const Tensor& x) {
  x_ = x;
  // res1 = x + attn(ln1(x)), summed by ln2 as it normalises it.
  const Tensor& ln2_out = ln2.forward_residual(x, attn.forward(ln1.forward(x)));
  res1_ = ln2.residual();
  ensure(out_buf_, x.shape());
  ops::add(out_buf_, res1_, mlp.forward(ln2_out));
}

const Tensor& Block::forward(const Tensor& x) {
  run_hooks(HookPoint::pre_forward);
  DTRAIN_CHECK(x.defined() && x.dim() == 3, "Block: input must be [B, T, C], got ", x.describe());
  compute(x);
  if (checkpointing_) {
    // Keep only the input (owned upstream) and the output; backward recomputes the rest.
    ln1.release_activations();
    attn.release_activations();
    ln2.release_activations();
    mlp.release_activations();
    res1_ = Tensor();
  }
  run_hooks(HookPoint::post_forward);
  return out_buf_;
}

void Block::backward(const Tensor& dout, Tensor& dx) {
  run_hooks(HookPoint::pre_backward);
  DTRAIN_CHECK(x_.defined(), "Block::backward called before forward (or after release_activations)");
  if (checkpointing_) {
    // The recompute writes the same values into out_buf_ (ops are deterministic).
    compute(x_);
  }
  // out = res1 + mlp(ln2(res1)):  dres1 = dout + ln2^T mlp^T dout
  ensure(dres1_, dout.shape());
  dres1_.copy_(dout);
  ensure_zeroed(dln_, dout.shape());
  if (ln2.recompute()) ln2.recompute_output();  // mlp.fc reads it
  mlp.backward(dout, dln_);
  ln2.backward(dln_, dres1_);
  // res1 = x + attn(ln1(x)):  dx += dres1 + ln1^T attn^T dres1
  if (dx.defined()) ops::add_(dx, dres1_);
  dln_.zero_();
  if (ln1.recompute()) ln1.recompute_output();  // attn.qkv reads it
  attn.backward(dres1_, dln_);
  ln1.backward(dln_, dx);
  if (checkpointing_) {
    ln1.release_activations();
    attn.release_activations();
    ln2.release_activations();
    mlp.release_activations();
    res1_ = Tensor();
    dres1_ = Tensor();
    dln_ = Tensor();
  }
  run_hooks(HookPoint::post_backward);
}

void Block::release_activations() {
  Module::release_activations();
  x_ = Tensor();
  res1_ = Tensor();
  out_buf_ = Tensor();
  dres1_ = Tensor();
  dln_ = Tensor();
}

}  // namespace dtrain::nn
