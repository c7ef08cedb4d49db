// GPT-2 family language model: token + position embedding, n_layer
// pre-LayerNorm blocks, final LayerNorm, output head tied to the token
// embedding. GPT-2 initialisation: weights N(0, 0.02), the two residual
// projections of each block N(0, 0.02 / sqrt(2 * n_layer)), biases 0,
// LayerNorm gains 1. Each parameter draws from its own stream seeded by
// (seed, dotted name), so initial weights do not depend on construction order.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "dtrain/dtype.h"
#include "dtrain/nn/layers.h"
#include "dtrain/nn/module.h"

namespace dtrain::nn {

struct GPTConfig {
  int64_t n_layer = 2;
  int64_t n_head = 4;
  int64_t n_embd = 128;
  int64_t vocab_size = 256;
  int64_t max_seq_len = 128;  // rows of the position table
  bool checkpoint_activations = false;
  // llm.c's recompute: 0 keeps every activation; 1 recomputes each MLP's GELU
  // in backward from its input instead of keeping it (saves B*T*4C elements
  // per layer); 2 also recomputes every layernorm's output in backward from
  // its saved input and statistics (all blocks share one output buffer).
  int recompute = 0;
  // Mixed precision: the dtype parameters (and so activations and gradients) are
  // stored in, and the dtype the matmuls compute in. f32/f32 is plain training;
  // bf16/bf16 (or f16/f16) keeps f32 master weights in the optimizer or the
  // engine's shards. Layernorm statistics, softmax and the loss stay f32.
  DType param_dtype = DType::f32;
  DType compute_dtype = DType::f32;

  // "tiny" (2 layers, 4 heads, width 128, byte vocabulary 256, context 128:
  // tests and CPU demos), "gpt2-124m", "gpt2-350m". Throws naming the presets.
  static GPTConfig preset(const std::string& name);
  static std::vector<std::string> preset_names();
  // Throws a dtrain::Error naming the bad field (heads not dividing the
  // width, non-positive sizes, ...).
  void validate() const;
  std::string str() const;
};

// The output head: logits = x @ wte^T, using the embedding's table (shared).
class TiedLMHead : public Module {
 public:
  TiedLMHead(Parameter& wte, Device device);
  const Tensor& forward(const Tensor& x);  // x [B, T, C] -> logits [B, T, V]
  void backward(const Tensor& dlogits, Tensor& dx);
  void release_activations() override;

 private:
  Parameter& wte_;
  Tensor x_, logits_;
};

class GPT : public Module {
 public:
  // Under nn::DeferredInit the parameters get no storage and no values: a
  // data-parallel engine initialises each rank's part from `seed`
  // (init_parameter_slice), bitwise as init_weights(seed) would.
  explicit GPT(const GPTConfig& config, Device device = Device::cpu(), uint64_t seed = 1337);

  const GPTConfig& config() const { return config_; }

  // Inference: tokens [B, T] (i32, any device; copied to the model's device
  // when elsewhere) -> logits [B, T, V], owned by the model.
  const Tensor& forward(const Tensor& tokens);
  // Training forward: returns the mean cross-entropy over targets that are
  // not `ignore_index`, and prepares d loss / d logits (times grad_scale, e.g.
  // 1 / accumulation steps) for backward().
  float forward(const Tensor& tokens, const Tensor& targets, float grad_scale = 1.0f, int32_t ignore_index = -100);
  // Accumulates every parameter's gradient for the last training forward.
  void backward();

  // Sets activation checkpointing on every block.
  void set_checkpointing(bool on);
  // Layernorm recompute (llm.c's recompute level 2) on every block: all
  // blocks' ln1/ln2 outputs share one buffer and backward recomputes each
  // (Block::set_recompute_layernorm). Losses and gradients are unchanged, bit
  // for bit; 2 * n_layer - 1 activations of [B, T, C] fewer are kept.
  void set_recompute_layernorm(bool on);
  // Re-draws every parameter from `seed` (GPT-2 initialisation).
  void init_weights(uint64_t seed);
  // Elements [first_element, first_element + out.numel()) of parameter
  // `name`'s GPT-2 initial value for the seed last given (constructor or
  // init_weights).
  void init_parameter_slice(const std::string& name, Tensor& out, int64_t first_element) const override;

  // FLOPs of one training step per token: 6 * (non-embedding params + wte as
  // the head) + attention 6 * n_layer * T * C (forward+backward of QK^T and AV).
  double flops_per_token(int64_t seq_len) const;

  Embedding embed;
  std::vector<std::unique_ptr<Block>> blocks;
  ModuleList block_list;  // names the blocks "blocks.<i>" in the tree
  LayerNorm ln_f;
  TiedLMHead head;

 private:
  void check_tokens(const Tensor& tokens, const char* what) const;
  const Tensor& run_forward(const Tensor& tokens);

  GPTConfig config_;
  uint64_t seed_ = 0;
  Tensor tokens_dev_, targets_dev_, losses_, dlogits_, dx_, dx2_;
  bool have_dlogits_ = false;
};

// Sampling: continues each prompt by `max_new_tokens` tokens, greedy when
// temperature <= 0, else sampling from softmax(logits / temperature) with rng.
// Stops a sequence early at `stop_token` (>= 0). Returns only the new tokens.
std::vector<int32_t> generate(GPT& model, const std::vector<int32_t>& prompt, int64_t max_new_tokens, float temperature,
                              std::mt19937_64& rng, int32_t stop_token = -1);
// Greedy continuation of many prompts at once (one forward per new token for
// the whole batch; prompts are right-padded, which causal attention ignores).
std::vector<std::vector<int32_t>> generate_greedy_batch(GPT& model, const std::vector<std::vector<int32_t>>& prompts,
                                                        int64_t max_new_tokens, int32_t stop_token = -1);

}  // namespace dtrain::nn
