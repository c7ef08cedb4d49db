// Helpers shared by the nn tests.
#pragma once

#include <cstdint>

#include "dtrain/nn/gpt.h"
#include "dtrain/nn/init.h"

namespace dtrain::testing {

// A very small GPT for gradient checks and hook tests.
inline nn::GPTConfig micro_config() {
  nn::GPTConfig c;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 8;
  c.vocab_size = 11;
  c.max_seq_len = 8;
  return c;
}

// Tokens/targets [B, T] with values in [0, vocab), deterministic.
inline Tensor random_tokens(int64_t b, int64_t t, int64_t vocab, uint64_t seed) {
  Tensor x = Tensor::empty({b, t}, DType::i32);
  uint64_t s = seed * 2654435761u + 1;
  for (int64_t i = 0; i < x.numel(); ++i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x.data<int32_t>()[i] = static_cast<int32_t>((s >> 33) % static_cast<uint64_t>(vocab));
  }
  return x;
}

// Re-draws every parameter with a larger spread (LayerNorm gains around 1),
// so that every path of the model carries gradient a finite difference can see.
inline void perturb_parameters(nn::Module& m, float std, uint64_t seed) {
  for (auto& np : m.named_parameters()) {
    const bool gain = np.param->name() == "weight" && np.param->shape().size() == 1;
    nn::init_normal(np.param->value, gain ? 1.0f : 0.0f, std, seed, nn::stream_id(np.name));
  }
}

}  // namespace dtrain::testing
