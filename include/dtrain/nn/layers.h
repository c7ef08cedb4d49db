// Built-in layers. Each keeps its activations for backward and follows the
// module conventions in module.h:
//   const Tensor& forward(const Tensor& x)    -> output owned by the layer,
//                                               valid until its next forward;
//   void backward(const Tensor& dout, Tensor& dx)  dx += d loss / d x
//                                               (dx may be undefined: skipped),
//                                               param.grad += ...
// Every layer takes a device and a dtype (f32, bf16 or f16): its parameters,
// activations and gradients live there in that dtype.
// The input x of forward must stay unchanged until backward (layers keep a
// handle to it, not a copy).
#pragma once

#include <cstdint>
#include <memory>

#include "dtrain/nn/module.h"

namespace dtrain::nn {

// out[..., out_features] = x[..., in_features] @ weight^T + bias.
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true, Device device = Device::cpu(),
         DType dtype = DType::f32);
  const Tensor& forward(const Tensor& x);
  void backward(const Tensor& dout, Tensor& dx);
  void release_activations() override;

  Parameter& weight;  // [out, in], weight decay
  Parameter* bias;    // [out] or nullptr, no weight decay
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }
  // The last forward's output.
  const Tensor& output() const { return out_buf_; }

  // The fused paths of an MLP (fc -> GELU -> proj, ops::linear_gelu and
  // ops::matmul_dgelu_bgrad); each runs this layer's hooks and grad_ready.
  // fc: output() = x @ W^T + b (kept: GELU's input), gelu_out = gelu(output()).
  void forward_gelu(const Tensor& x, Tensor& gelu_out);
  // proj: weight and bias gradients for dout as backward() gives them, and
  // instead of dx the gradient at the GELU's input `pre` (the layer before's
  // output): dpre = (dout @ W) * gelu'(pre) (written), dbias_pre += its column sums.
  void backward_through_gelu(const Tensor& dout, Tensor& dpre, Tensor& dbias_pre, const Tensor& pre);
  // fc: backward() with the bias gradient already summed (backward_through_gelu's
  // dbias_pre): dx += dout @ W, weight.grad += dout^T x, bias.grad += dbias.
  void backward_with_bias_grad(const Tensor& dout, Tensor& dx, const Tensor& dbias);
  // Replaces the input kept for backward; undefined drops it (the MLP's GELU
  // recompute frees the hidden activation after forward and hands the
  // recomputed one back before backward).
  void replace_input(const Tensor& x);

 private:
  void keep_input(const Tensor& x);  // checks x, keeps it for backward, sizes output()
  int64_t in_, out_;
  Tensor x_, out_buf_;
};

// LayerNorm over the last dimension with gain and bias.
class LayerNorm : public Module {
 public:
  explicit LayerNorm(int64_t channels, Device device = Device::cpu(), float eps = 1e-5f);
  // Gains and biases in `dtype`; mean and rstd are always f32.
  LayerNorm(int64_t channels, Device device, DType dtype, float eps = 1e-5f);
  const Tensor& forward(const Tensor& x);
  // Normalises a + b (a residual add fused with this layernorm,
  // ops::add_layernorm); the sum is kept as residual() and is what backward
  // differentiates at: backward's dx is then the gradient of a and of b.
  const Tensor& forward_residual(const Tensor& a, const Tensor& b);
  // The sum of the last forward_residual (owned by this layer).
  const Tensor& residual() const { return residual_; }
  void backward(const Tensor& dout, Tensor& dx);
  void release_activations() override;

  // Layernorm recompute: the output is written into `shared_output`, a buffer
  // other layers share (nullptr: off, the layer owns its output). A consumer
  // that keeps the output for its backward (a Linear) then keeps a handle to
  // that buffer, whose values the next sharing layer overwrites; before the
  // consumer's backward, recompute_output() writes this layer's output there
  // again from the saved input and statistics, bit for bit the same (the same
  // deterministic op on the same input). Only the input, mean and rstd stay
  // per layer.
  void set_recompute(std::shared_ptr<Tensor> shared_output);
  bool recompute() const { return shared_output_ != nullptr; }
  // Rewrites the last forward's output into the shared buffer (runs the
  // forward hooks around it, so a ZeRO-3 engine gathers the gain and bias).
  void recompute_output();

  Parameter& weight;  // [C], ones
  Parameter& bias;    // [C], zeros

 private:
  Tensor& output_buffer(const Shape& shape);
  int64_t channels_;
  float eps_;
  Tensor x_, residual_, out_buf_, mean_, rstd_;
  std::shared_ptr<Tensor> shared_output_;
};

// Token + position embedding: out[b, t] = wte[tokens[b, t]] + wpe[t].
class Embedding : public Module {
 public:
  Embedding(int64_t vocab_size, int64_t max_seq_len, int64_t channels, Device device = Device::cpu(),
            DType dtype = DType::f32);
  // tokens [B, T] i32 on this module's device, T <= max_seq_len.
  const Tensor& forward(const Tensor& tokens);
  // No input gradient (tokens are integers).
  void backward(const Tensor& dout);
  void release_activations() override;

  Parameter& wte;  // [V, C]
  Parameter& wpe;  // [max_seq_len, C]
  const Tensor& output() const { return out_buf_; }

 private:
  int64_t max_seq_len_, channels_;
  Tensor tokens_, out_buf_;
};

// Multi-head causal self-attention: qkv projection, attention, output projection.
class CausalSelfAttention : public Module {
 public:
  CausalSelfAttention(int64_t channels, int64_t num_heads, Device device = Device::cpu(), DType dtype = DType::f32);
  const Tensor& forward(const Tensor& x);
  void backward(const Tensor& dout, Tensor& dx);
  void release_activations() override;

  Linear qkv;   // C -> 3C
  Linear proj;  // C -> C (a residual projection)
  int64_t num_heads() const { return num_heads_; }

 private:
  int64_t channels_, num_heads_;
  Tensor att_, lse_, datt_, dqkv_;
};

// fc (C -> hidden) -> GELU -> proj (hidden -> C), with the GELU fused into
// both GEMMs (ops::linear_gelu forward; ops::matmul_dgelu_bgrad backward).
// With recompute_gelu on, forward keeps only fc's output (GELU's input) and
// backward recomputes the GELU from it, so the hidden GELU activation
// (B*T*hidden elements) exists only while this MLP runs.
class MLP : public Module {
 public:
  MLP(int64_t channels, int64_t hidden, Device device = Device::cpu(), DType dtype = DType::f32);
  const Tensor& forward(const Tensor& x);
  void backward(const Tensor& dout, Tensor& dx);
  void release_activations() override;
  void set_recompute_gelu(bool on) { recompute_gelu_ = on; }
  bool recompute_gelu() const { return recompute_gelu_; }

  Linear fc;
  Linear proj;  // a residual projection

 private:
  // Recompute: lets go of the GELU output (and proj's reference to it).
  void drop_gelu();
  bool recompute_gelu_ = false;
  Tensor gelu_, dpre_, dfc_bias_;
};

// Pre-LayerNorm transformer block: x + attn(ln1(x)), then + mlp(ln2(.)).
// The first residual add runs fused with ln2 (LayerNorm::forward_residual,
// ops::add_layernorm), which keeps the sum. The block's last add is not fused
// with the next block's ln1: see docs/ops.md ("add_layernorm").
// With checkpointing on, forward keeps only its input and output; backward
// runs the forward again (hooks included) to rebuild the activations, then
// releases them, so a model holds one block's activations at a time.
class Block : public Module {
 public:
  Block(int64_t channels, int64_t num_heads, Device device = Device::cpu(), DType dtype = DType::f32);
  const Tensor& forward(const Tensor& x);
  void backward(const Tensor& dout, Tensor& dx);
  void release_activations() override;
  void set_checkpointing(bool on) { checkpointing_ = on; }
  bool checkpointing() const { return checkpointing_; }
  // Layernorm recompute (LayerNorm::set_recompute): ln1 and ln2 write their
  // outputs into `shared_output` (nullptr: a buffer of this block's own) and
  // backward recomputes each right before the layer that reads it. Saves one
  // activation of [B, T, C] per layernorm sharing the buffer, less one.
  void set_recompute_layernorm(bool on, std::shared_ptr<Tensor> shared_output = nullptr);
  bool recompute_layernorm() const { return ln1.recompute(); }

  LayerNorm ln1;
  CausalSelfAttention attn;
  LayerNorm ln2;
  MLP mlp;

 private:
  void compute(const Tensor& x);  // the forward without hooks
  bool checkpointing_ = false;
  Tensor x_, res1_, out_buf_;
  Tensor dres1_, dln_;
};

}  // namespace dtrain::nn
