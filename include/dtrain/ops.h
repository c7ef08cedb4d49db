// The op set: one function per op, forward and backward, dispatched on the
// device of the tensors (CPU: src/ops/cpu/, CUDA: kernels/). The CPU version
// is the oracle the CUDA version is tested against.
//
// Conventions (the same for every op):
//  - Outputs are passed in, already allocated with the right shape, dtype and
//    device; ops never allocate their results (so a training step can run
//    without allocating).
//  - Backward ops ADD into every gradient they produce (dx += ..., dweight += ...),
//    like autograd's .grad accumulation: callers zero gradient buffers first.
//    This is what lets residual streams and gradient accumulation share buffers.
//  - All tensors of one call are on the same device. Ops take f32, bf16 or f16
//    activations, weights and gradients (the tensors of one call in one dtype,
//    except where an op says otherwise: layernorm statistics, attention's lse
//    and the losses are f32). CUDA computes in them; the CPU converts to f32,
//    runs its f32 kernel and rounds the outputs back once
//    (src/ops/cpu_low_precision.h), so CI runs the mixed-precision path too.
//  - Bad inputs (shape, dtype, device, aliasing) throw dtrain::Error naming the
//    op, the argument and expected vs actual.
//  - Shapes: B batch, T sequence, C channels, NH heads, V vocabulary, N rows.
#pragma once

#include <vector>

#include "dtrain/tensor.h"

namespace dtrain::ops {

// ---- matmul -----------------------------------------------------------------
// out = alpha * op(a) @ op(b) + beta * out, with op(x) = x or x^T (last two dims).
// a, b, out are 2-D, or 3-D with the same leading batch dimension.
// a is [M, K] ([K, M] when trans_a); b is [K, N] ([N, K] when trans_b); out [M, N].
void matmul(Tensor& out, const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false,
            float alpha = 1.0f, float beta = 0.0f);
// Gradients of out = op(a) @ op(b): da += d/da, db += d/db. Either may be undefined (skipped).
void matmul_backward(Tensor& da, Tensor& db, const Tensor& dout, const Tensor& a, const Tensor& b, bool trans_a = false,
                     bool trans_b = false);

// ---- linear -----------------------------------------------------------------
// out[..., OC] = x[..., IC] @ weight[OC, IC]^T + bias[OC] (bias may be undefined).
void linear(Tensor& out, const Tensor& x, const Tensor& weight, const Tensor& bias);
// dx += dout @ weight; dweight += dout^T @ x; dbias += sum over rows of dout.
// Any of dx, dweight, dbias may be undefined (skipped).
void linear_backward(Tensor& dx, Tensor& dweight, Tensor& dbias, const Tensor& dout, const Tensor& x,
                     const Tensor& weight);

// ---- layernorm --------------------------------------------------------------
// out = (x - mean) * rstd * weight + bias over the last dim C; x [..., C].
// mean and rstd ([rows], f32) are saved for backward.
void layernorm(Tensor& out, Tensor& mean, Tensor& rstd, const Tensor& x, const Tensor& weight, const Tensor& bias,
               float eps = 1e-5f);
void layernorm_backward(Tensor& dx, Tensor& dweight, Tensor& dbias, const Tensor& dout, const Tensor& x,
                        const Tensor& weight, const Tensor& mean, const Tensor& rstd);

// ---- residual add fused with the next layernorm ----------------------------------
// residual = a + b; out = layernorm(residual) with mean/rstd saved, as
// add(residual, a, b) then layernorm(out, mean, rstd, residual, ...) would give
// (bf16/f16: the residual is rounded to its dtype before it is normalised).
// residual may be exactly a or b (in place). There is no separate backward:
// layernorm_backward(dresidual, dweight, dbias, dout, residual, weight, mean, rstd)
// adds the layernorm's share into dresidual, which is then a's and b's gradient.
void add_layernorm(Tensor& residual, Tensor& out, Tensor& mean, Tensor& rstd, const Tensor& a, const Tensor& b,
                   const Tensor& weight, const Tensor& bias, float eps = 1e-5f);

// ---- GELU (tanh approximation) ------------------------------------------------
void gelu(Tensor& out, const Tensor& x);
void gelu_backward(Tensor& dx, const Tensor& dout, const Tensor& x);

// ---- causal multi-head self-attention ------------------------------------------
// qkv [B, T, 3C] holds q, k, v side by side (each [B, T, NH, C/NH]); out [B, T, C].
// Scores are scaled by 1/sqrt(C/NH) and masked causally. lse [B, NH, T] (f32)
// receives each row's log-sum-exp, which backward uses to rebuild the softmax
// (memory linear in T).
void attention(Tensor& out, Tensor& lse, const Tensor& qkv, int64_t num_heads);
void attention_backward(Tensor& dqkv, const Tensor& dout, const Tensor& qkv, const Tensor& out, const Tensor& lse,
                        int64_t num_heads);

// ---- softmax cross-entropy, fused with its gradient --------------------------------
// logits [N, V], targets [N] (i32). losses [N] (f32) gets -log softmax(logits)[target]
// (0 where target == ignore_index). When dlogits [N, V] is defined it gets
// (softmax - onehot(target)) * grad_scale (0 rows where ignored) -- written,
// not accumulated, since it is the first gradient of the chain.
// A target outside [0, V) that is not ignore_index throws.
void softmax_cross_entropy(Tensor& losses, Tensor& dlogits, const Tensor& logits, const Tensor& targets,
                           float grad_scale = 1.0f, int32_t ignore_index = -100);

// ---- token + position embedding ------------------------------------------------
// out[b, t, :] = wte[tokens[b, t], :] + wpe[t, :]; tokens [B, T] (i32), wte [V, C], wpe [maxT, C].
// A token outside [0, V) throws.
void embedding(Tensor& out, const Tensor& tokens, const Tensor& wte, const Tensor& wpe);
// dwte[tokens[b,t]] += dout[b,t]; dwpe[t] += dout[b,t]. Either table grad may be undefined.
void embedding_backward(Tensor& dwte, Tensor& dwpe, const Tensor& dout, const Tensor& tokens);

// ---- elementwise ----------------------------------------------------------------
// out = a + b (same shape); out may alias a or b. Backward of add is the identity:
// use add_ to accumulate dout into both inputs' gradients.
void add(Tensor& out, const Tensor& a, const Tensor& b);
// y += alpha * x (same shape).
void add_(Tensor& y, const Tensor& x, float alpha = 1.0f);
// out = alpha * x; out may alias x.
void scale(Tensor& out, const Tensor& x, float alpha);
// Converts between floating dtypes (f32 <-> bf16, f32 <-> f16), same shape.
void cast(Tensor& out, const Tensor& x);

// ---- optimizer and norms ---------------------------------------------------------
struct AdamWConfig {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  int64_t step = 1;         // 1-based step number, for bias correction
  float grad_scale = 1.0f;  // gradients are multiplied by this first (unscale, clip)
  // Optional f32 [1] on the parameters' device: gradients are also multiplied
  // by its element, read by the update itself (no host synchronisation), e.g.
  // a clip coefficient from clip_coefficient.
  Tensor device_grad_scale;
};
// One tensor's worth of AdamW state. param is the f32 master; grad f32, bf16 or f16;
// exp_avg, exp_avg_sq f32. param_copy (optional, bf16) receives the updated
// weights in low precision. weight_decay is decoupled: p -= lr * wd * p.
struct AdamWTensor {
  Tensor param;
  Tensor grad;
  Tensor exp_avg;
  Tensor exp_avg_sq;
  Tensor param_copy;
  float weight_decay = 0.0f;
};
// Updates every tensor of the list (one launch on CUDA).
void adamw_step(std::vector<AdamWTensor>& tensors, const AdamWConfig& config);

// out ([1], f32) = sum over all tensors of sum(x^2). Squared, so sharded
// callers can all-reduce it before the square root.
void global_norm_squared(Tensor& out, const std::vector<Tensor>& tensors);
// Convenience: sqrt of the above, returned to the host.
float global_norm(const std::vector<Tensor>& tensors);
// out ([1], f32) = optim::clip_factor(norm, max_norm) / loss_scale, where
// norm = sqrt(norm_squared[0]) / loss_scale, computed on norm_squared's
// device (the host reads nothing): the gradient multiplier of a clipped,
// loss-scale-undone update (AdamWConfig::device_grad_scale). A non-finite
// norm gives NaN (the caller reports it when it reads the norm).
void clip_coefficient(Tensor& out, const Tensor& norm_squared, float max_norm, float loss_scale);

// ---- MLP GEMMs with GELU fused into their epilogues ------------------------------
// What cuBLASLt fuses on CUDA (CUBLASLT_EPILOGUE_GELU_AUX_BIAS and
// CUBLASLT_EPILOGUE_DGELU_BGRAD), so an MLP fc -> GELU -> proj needs no separate
// GELU pass in either direction. GELU is the tanh approximation of ops::gelu.
// The CPU composes linear and gelu; CUDA falls back to that composition when
// cuBLASLt offers no algorithm (fused_epilogue_counts() tells which ran).
//
// pre[..., OC] = x[..., IC] @ weight[OC, IC]^T + bias[OC] (bias may be undefined);
// out = gelu(pre). Both written; pre is what the backward partner reads.
void linear_gelu(Tensor& out, Tensor& pre, const Tensor& x, const Tensor& weight, const Tensor& bias);
// The backward of the next linear's input, through the GELU: with dout [..., C]
// the gradient of that linear's output and weight [C, H] its weight,
//   dpre[..., H] = (dout @ weight) * gelu'(pre)   (written: an intermediate)
//   dbias[H]    += sum over rows of dpre          (accumulated, like linear_backward;
//                                                  undefined: skipped).
void matmul_dgelu_bgrad(Tensor& dpre, Tensor& dbias, const Tensor& dout, const Tensor& weight, const Tensor& pre);
// How many linear_gelu / matmul_dgelu_bgrad calls, since the process started,
// ran as one fused library GEMM and how many were composed from separate
// kernels (every CPU call; a CUDA call cuBLASLt declined, or DTRAIN_GEMM_FALLBACK=1).
struct FusedEpilogueCounts {
  int64_t fused = 0;
  int64_t composed = 0;
};
FusedEpilogueCounts fused_epilogue_counts();

}  // namespace dtrain::ops
