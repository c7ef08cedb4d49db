#include "dtrain/nn/layers.h"
#include "dtrain/ops.h"

namespace dtrain::nn {

Embedding::Embedding(int64_t vocab_size, int64_t max_seq_len, int64_t channels, Device device, DType dtype)
    : Module("Embedding", device, dtype),
      wte(create_parameter("wte", {vocab_size, channels}, ParamInit::zeros, true)),
      wpe(create_parameter("wpe", {max_seq_len, channels}, ParamInit::zeros, true)),
      max_seq_len_(max_seq_len),
      channels_(channels) {
  DTRAIN_CHECK(vocab_size > 0 && max_seq_len > 0 && channels > 0, "Embedding(", vocab_size, ", ", max_seq_len, ", ",
               channels, "): sizes must be positive");
}

const Tensor& Embedding::forward(const Tensor& tokens) {
  run_hooks(HookPoint::pre_forward);
  DTRAIN_CHECK(tokens.defined() && tokens.dim() == 2 && tokens.dtype() == DType::i32,
               "Embedding: tokens must be i32 [B, T], got ", tokens.describe());
  DTRAIN_CHECK(tokens.size(1) <= max_seq_len_, "Embedding: sequence length ", tokens.size(1),
               " is longer than the position table (", max_seq_len_,
               " positions); use a shorter --seq-len or a larger max_seq_len");
  tokens_ = tokens;
  ensure(out_buf_, {tokens.size(0), tokens.size(1), channels_});
  ops::embedding(out_buf_, tokens, wte.require_value(), wpe.require_value());
  run_hooks(HookPoint::post_forward);
  return out_buf_;
}

void Embedding::backward(const Tensor& dout) {
  run_hooks(HookPoint::pre_backward);
  DTRAIN_CHECK(tokens_.defined(), "Embedding::backward called before forward (or after release_activations)");
  ops::embedding_backward(wte.require_grad(), wpe.require_grad(), dout, tokens_);
  grad_ready(wte);
  grad_ready(wpe);
  run_hooks(HookPoint::post_backward);
}

void Embedding::release_activations() {
  tokens_ = Tensor();
  out_buf_ = Tensor();
}

}  // namespace dtrain::nn
