// The small GPT the precision tests train (precision_worker.cpp and
// test_mixed_precision.cpp): a few thousand parameters, in any dtype.
#pragma once

#include <cstdint>

#include "dtrain/nn/gpt.h"

namespace dtrain::testing {

inline nn::GPTConfig small_gpt(DType dtype, int64_t n_embd, int64_t vocab_size, int64_t max_seq_len) {
  nn::GPTConfig c;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = n_embd;
  c.vocab_size = vocab_size;
  c.max_seq_len = max_seq_len;
  c.param_dtype = dtype;
  c.compute_dtype = dtype;
  return c;
}

}  // namespace dtrain::testing
