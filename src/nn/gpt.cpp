#include "dtrain/nn/gpt.h"

#include <cmath>
#include <memory>
#include <sstream>

#include "dtrain/nn/init.h"
#include "dtrain/ops.h"

namespace dtrain::nn {

// ---- config -------------------------------------------------------------------

GPTConfig GPTConfig::preset(const std::string& name) {
  GPTConfig c;
  if (name == "tiny") {
    c.n_layer = 2;
    c.n_head = 4;
    c.n_embd = 128;
    c.vocab_size = 256;  // byte-level: the built-in data and any text file
    c.max_seq_len = 128;
  } else if (name == "gpt2-124m") {
    c.n_layer = 12;
    c.n_head = 12;
    c.n_embd = 768;
    c.vocab_size = 50257;
    c.max_seq_len = 1024;
  } else if (name == "gpt2-350m") {
    c.n_layer = 24;
    c.n_head = 16;
    c.n_embd = 1024;
    c.vocab_size = 50257;
    c.max_seq_len = 1024;
  } else {
    std::ostringstream names;
    for (auto& n : preset_names()) names << " " << n;
    DTRAIN_THROW("unknown GPT preset '", name, "'; known presets:", names.str());
  }
  return c;
}

std::vector<std::string> GPTConfig::preset_names() {
  return {"tiny", "gpt2-124m", "gpt2-350m"};
}

void GPTConfig::validate() const {
  DTRAIN_CHECK(n_layer > 0, "GPT config: n_layer must be positive, got ", n_layer);
  DTRAIN_CHECK(n_head > 0, "GPT config: n_head must be positive, got ", n_head);
  DTRAIN_CHECK(n_embd > 0, "GPT config: n_embd must be positive, got ", n_embd);
  DTRAIN_CHECK(n_embd % n_head == 0, "GPT config: ", n_head, " heads do not divide the width n_embd=", n_embd,
               "; pick n_head dividing n_embd");
  DTRAIN_CHECK(vocab_size > 0, "GPT config: vocab_size must be positive, got ", vocab_size);
  DTRAIN_CHECK(max_seq_len > 0, "GPT config: max_seq_len must be positive, got ", max_seq_len);
  DTRAIN_CHECK(recompute >= 0 && recompute <= 2, "GPT config: recompute must be 0 (keep activations), 1 ",
               "(recompute the MLP's GELU in backward) or 2 (also the layernorms), got ", recompute);
  const bool float_params = param_dtype == DType::f32 || param_dtype == DType::bf16 || param_dtype == DType::f16;
  DTRAIN_CHECK(float_params, "GPT config: param_dtype must be f32, bf16 or f16, got ", dtype_name(param_dtype));
  // The ops compute in the dtype of their inputs (accumulating in f32), so
  // the matmuls run in the parameters' dtype: there is no per-op autocast.
  // f32 master weights of a bf16/f16 model live in the optimizer or the
  // engine's shards, not in the model.
  DTRAIN_CHECK(compute_dtype == param_dtype, "GPT config: compute_dtype ", dtype_name(compute_dtype),
               " differs from param_dtype ", dtype_name(param_dtype),
               "; the model computes in its parameters' dtype: use f32/f32, bf16/bf16 or f16/f16 (f32 master "
               "weights stay in the optimizer or the data-parallel engine)");
}

std::string GPTConfig::str() const {
  std::ostringstream os;
  os << "n_layer=" << n_layer << " n_head=" << n_head << " n_embd=" << n_embd << " vocab_size=" << vocab_size
     << " max_seq_len=" << max_seq_len << (checkpoint_activations ? " checkpointing" : "");
  if (param_dtype != DType::f32) os << " dtype=" << dtype_name(param_dtype);
  if (recompute != 0) os << " recompute=" << recompute;
  return os.str();
}

// ---- tied head ------------------------------------------------------------------

TiedLMHead::TiedLMHead(Parameter& wte, Device device) : Module("TiedLMHead", device, wte.dtype()), wte_(wte) {
  add_shared_parameter(wte);
}

const Tensor& TiedLMHead::forward(const Tensor& x) {
  run_hooks(HookPoint::pre_forward);
  x_ = x;
  ensure(logits_, with_last_dim(x.shape(), wte_.shape()[0]));
  ops::linear(logits_, x, wte_.require_value(), Tensor());
  run_hooks(HookPoint::post_forward);
  return logits_;
}

void TiedLMHead::backward(const Tensor& dlogits, Tensor& dx) {
  run_hooks(HookPoint::pre_backward);
  Tensor no_bias;
  // wte's gradient is not complete here: the embedding adds to it last and
  // reports it ready.
  ops::linear_backward(dx, wte_.require_grad(), no_bias, dlogits, x_, wte_.require_value());
  run_hooks(HookPoint::post_backward);
}

void TiedLMHead::release_activations() {
  x_ = Tensor();
  logits_ = Tensor();
}

// ---- GPT ------------------------------------------------------------------------

namespace {
const GPTConfig& validated(const GPTConfig& c) {
  c.validate();
  return c;
}
}  // namespace

GPT::GPT(const GPTConfig& config, Device device, uint64_t seed)
    : Module("GPT", device, validated(config).param_dtype),
      embed(config.vocab_size, config.max_seq_len, config.n_embd, device, config.param_dtype),
      block_list(device, config.param_dtype),
      ln_f(config.n_embd, device, config.param_dtype),
      head(embed.wte, device),
      config_(config) {
  check_device_available(device);
  add_module("embed", embed);
  for (int64_t i = 0; i < config.n_layer; ++i) {
    blocks.push_back(std::make_unique<Block>(config.n_embd, config.n_head, device, config.param_dtype));
    blocks.back()->set_checkpointing(config.checkpoint_activations);
    blocks.back()->mlp.set_recompute_gelu(config.recompute >= 1);
  }
  // Children register in execution order, so named_parameters() is too.
  // add_module needs the blocks at their final addresses (unique_ptr: stable).
  for (auto& b : blocks) block_list.append(*b);
  add_module("blocks", block_list);
  add_module("ln_f", ln_f);
  add_module("head", head);
  if (config.recompute >= 2) set_recompute_layernorm(true);
  seed_ = seed;
  if (!DeferredInit::active()) init_weights(seed);
}

void GPT::init_weights(uint64_t seed) {
  seed_ = seed;
  for (auto& np : named_parameters()) init_parameter_slice(np.name, np.param->value, 0);
}

void GPT::init_parameter_slice(const std::string& name, Tensor& out, int64_t first_element) const {
  const Parameter& p = parameter(name);
  DTRAIN_CHECK(out.defined() && first_element >= 0 && first_element + out.numel() <= p.numel(),
               "GPT::init_parameter_slice: elements [", first_element, ", ", first_element + out.numel(),
               ") are outside parameter '", name, "' (", p.numel(), " elements)");
  if (p.name() == "bias") {
    out.zero_();
  } else if (p.shape().size() == 1) {  // LayerNorm gain
    out.fill_(1.0);
  } else {
    const float std = 0.02f;
    const float residual_std = std / std::sqrt(2.0f * static_cast<float>(config_.n_layer));
    const bool residual = name.size() >= 12 && name.compare(name.size() - 12, 12, ".proj.weight") == 0;
    init_normal(out, 0.0f, residual ? residual_std : std, seed_, stream_id(name), first_element);
  }
}

void GPT::set_checkpointing(bool on) {
  config_.checkpoint_activations = on;
  for (auto& b : blocks) b->set_checkpointing(on);
}

void GPT::set_recompute_layernorm(bool on) {
  std::shared_ptr<Tensor> shared_output = on ? std::make_shared<Tensor>() : nullptr;
  for (auto& b : blocks) b->set_recompute_layernorm(on, shared_output);
}

double GPT::flops_per_token(int64_t seq_len) const {
  // Matmul parameters: everything except the position table (a lookup); the
  // token table counts once, as the output head's weight.
  const double n = static_cast<double>(num_parameters() - embed.wpe.numel());
  // Attention scores and weighted sum: 2 matmuls of T x C per token forward,
  // 2 FLOPs per MAC, x3 for forward+backward, halved by the causal mask.
  const double attention = 6.0 * static_cast<double>(config_.n_layer * seq_len * config_.n_embd);
  return 6.0 * n + attention;
}

void GPT::check_tokens(const Tensor& tokens, const char* what) const {
  DTRAIN_CHECK(tokens.defined() && tokens.dim() == 2 && tokens.dtype() == DType::i32, "GPT: ", what,
               " must be i32 [B, T], got ", tokens.describe());
  DTRAIN_CHECK(tokens.size(0) > 0 && tokens.size(1) > 0, "GPT: ", what, " is empty: ", tokens.describe());
  DTRAIN_CHECK(tokens.size(1) <= config_.max_seq_len, "GPT: sequence length ", tokens.size(1),
               " is longer than the position table (max_seq_len ", config_.max_seq_len,
               "); shorten the sequence or build the model with a larger max_seq_len");
}

const Tensor& GPT::run_forward(const Tensor& tokens) {
  check_tokens(tokens, "tokens");
  const Tensor* tok = &tokens;
  if (tokens.device() != device()) {
    ensure(tokens_dev_, tokens.shape(), DType::i32);
    tokens_dev_.copy_(tokens);
    tok = &tokens_dev_;
  }
  const Tensor* x = &embed.forward(*tok);
  for (auto& b : blocks) x = &b->forward(*x);
  return head.forward(ln_f.forward(*x));
}

const Tensor& GPT::forward(const Tensor& tokens) {
  run_hooks(HookPoint::pre_forward);
  have_dlogits_ = false;
  const Tensor& logits = run_forward(tokens);
  run_hooks(HookPoint::post_forward);
  return logits;
}

float GPT::forward(const Tensor& tokens, const Tensor& targets, float grad_scale, int32_t ignore_index) {
  run_hooks(HookPoint::pre_forward);
  check_tokens(targets, "targets");
  DTRAIN_CHECK(targets.shape() == tokens.shape(), "GPT: targets ", targets.describe(), " and tokens ",
               tokens.describe(), " must have the same shape");
  have_dlogits_ = false;
  const Tensor& logits = run_forward(tokens);
  const int64_t n = tokens.numel();
  const int64_t v = config_.vocab_size;

  // Count the targets that take part (host side; targets are small).
  Tensor host_targets = targets.to(Device::cpu());
  const int32_t* t = host_targets.data<int32_t>();
  int64_t valid = 0;
  for (int64_t i = 0; i < n; ++i) valid += t[i] != ignore_index;
  DTRAIN_CHECK(valid > 0, "GPT: every target equals ignore_index ", ignore_index, "; there is nothing to learn from");

  const Tensor* tgt = &targets;
  if (targets.device() != device()) {
    ensure(targets_dev_, targets.shape(), DType::i32);
    targets_dev_.copy_(targets);
    tgt = &targets_dev_;
  }
  ensure(losses_, {n}, DType::f32);  // the loss stays f32 whatever the model's dtype
  ensure(dlogits_, {n, v});
  Tensor flat_logits = logits.reshape({n, v});
  Tensor flat_targets = tgt->reshape({n});
  ops::softmax_cross_entropy(losses_, dlogits_, flat_logits, flat_targets, grad_scale / static_cast<float>(valid),
                             ignore_index);
  have_dlogits_ = true;
  Tensor host_losses = losses_.to(Device::cpu());
  const float* l = host_losses.data<float>();
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += l[i];
  run_hooks(HookPoint::post_forward);
  return static_cast<float>(sum / static_cast<double>(valid));
}

void GPT::backward() {
  DTRAIN_CHECK(have_dlogits_, "GPT::backward needs a training forward (forward(tokens, targets)) first");
  run_hooks(HookPoint::pre_backward);
  const Shape act = embed.output().shape();
  Tensor dlogits = dlogits_.reshape(with_last_dim(act, config_.vocab_size));
  ensure_zeroed(dx_, act);
  head.backward(dlogits, dx_);
  ensure_zeroed(dx2_, act);
  ln_f.backward(dx_, dx2_);
  // dx2_ holds d loss / d (last block output); ping-pong down the blocks.
  Tensor* dout = &dx2_;
  Tensor* dnext = &dx_;
  for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) {
    dnext->zero_();
    (*it)->backward(*dout, *dnext);
    std::swap(dout, dnext);
  }
  embed.backward(*dout);
  have_dlogits_ = false;
  run_hooks(HookPoint::post_backward);
}

}  // namespace dtrain::nn
