#include <algorithm>
#include <cmath>

#include "dtrain/nn/gpt.h"
#include "dtrain/ops.h"

namespace dtrain::nn {

namespace {
int32_t argmax(const float* row, int64_t v) {
  return static_cast<int32_t>(std::max_element(row, row + v) - row);
}
// The logits of a forward as f32 on the host (a bf16/f16 model's are cast).
Tensor host_f32_logits(GPT& model, const Tensor& tokens) {
  const Tensor& logits = model.forward(tokens);
  if (logits.dtype() == DType::f32) return logits.to(Device::cpu());
  Tensor wide = Tensor::empty(logits.shape(), DType::f32, logits.device());
  ops::cast(wide, logits);
  return wide.to(Device::cpu());
}
}  // namespace

std::vector<int32_t> generate(GPT& model, const std::vector<int32_t>& prompt, int64_t max_new_tokens, float temperature,
                              std::mt19937_64& rng, int32_t stop_token) {
  DTRAIN_CHECK(!prompt.empty(), "generate: the prompt is empty; give at least one token");
  const int64_t ctx = model.config().max_seq_len;
  const int64_t v = model.config().vocab_size;
  std::vector<int32_t> seq = prompt;
  std::vector<int32_t> out;
  for (int64_t step = 0; step < max_new_tokens; ++step) {
    // Keep the last ctx tokens: the position table has no more rows.
    const int64_t start = std::max<int64_t>(0, static_cast<int64_t>(seq.size()) - ctx);
    const int64_t len = static_cast<int64_t>(seq.size()) - start;
    Tensor tokens = Tensor::empty({1, len}, DType::i32);
    std::copy(seq.begin() + start, seq.end(), tokens.data<int32_t>());
    Tensor logits = host_f32_logits(model, tokens);
    const float* row = logits.data<float>() + (len - 1) * v;
    int32_t next;
    if (temperature <= 0.0f) {
      next = argmax(row, v);
    } else {
      const float m = *std::max_element(row, row + v);
      std::vector<double> p(static_cast<size_t>(v));
      for (int64_t i = 0; i < v; ++i) p[i] = std::exp((row[i] - m) / temperature);
      std::discrete_distribution<int32_t> dist(p.begin(), p.end());
      next = dist(rng);
    }
    out.push_back(next);
    seq.push_back(next);
    if (next == stop_token) break;
  }
  return out;
}

std::vector<std::vector<int32_t>> generate_greedy_batch(GPT& model, const std::vector<std::vector<int32_t>>& prompts,
                                                        int64_t max_new_tokens, int32_t stop_token) {
  const int64_t n = static_cast<int64_t>(prompts.size());
  std::vector<std::vector<int32_t>> out(prompts.size());
  if (n == 0 || max_new_tokens <= 0) return out;
  size_t longest = 0;
  for (auto& p : prompts) {
    DTRAIN_CHECK(!p.empty(), "generate_greedy_batch: prompt ", &p - prompts.data(), " is empty");
    longest = std::max(longest, p.size());
  }
  const int64_t len = static_cast<int64_t>(longest) + max_new_tokens - 1;
  DTRAIN_CHECK(len <= model.config().max_seq_len, "generate_greedy_batch: prompts of ", longest, " tokens plus ",
               max_new_tokens, " new ones do not fit the context of ", model.config().max_seq_len);
  const int64_t v = model.config().vocab_size;
  // Right padding (token 0) never influences earlier positions under the causal mask.
  Tensor tokens = Tensor::zeros({n, len}, DType::i32);
  int32_t* tok = tokens.data<int32_t>();
  std::vector<int64_t> pos(prompts.size());
  std::vector<bool> done(prompts.size(), false);
  for (int64_t i = 0; i < n; ++i) {
    std::copy(prompts[i].begin(), prompts[i].end(), tok + i * len);
    pos[i] = static_cast<int64_t>(prompts[i].size());
  }
  for (int64_t step = 0; step < max_new_tokens; ++step) {
    Tensor logits = host_f32_logits(model, tokens);
    const float* l = logits.data<float>();
    bool all_done = true;
    for (int64_t i = 0; i < n; ++i) {
      if (done[i]) continue;
      const int32_t next = argmax(l + (i * len + pos[i] - 1) * v, v);
      out[i].push_back(next);
      if (pos[i] < len) tok[i * len + pos[i]] = next;
      ++pos[i];
      done[i] = next == stop_token;
      all_done = all_done && done[i];
    }
    if (all_done) break;
  }
  return out;
}

}  // namespace dtrain::nn
