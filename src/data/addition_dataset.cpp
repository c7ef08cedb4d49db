#include "dtrain/data/addition_dataset.h"

#include <algorithm>
#include <array>
#include <set>

#include "dtrain/data/byte_tokenizer.h"
#include "dtrain/error.h"

namespace dtrain::data {

namespace {
uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
uint64_t next(uint64_t& state) {
  return mix(state += 0x9e3779b97f4a7c15ull);
}
}  // namespace

AdditionDataset::AdditionDataset(int digits) : digits_(digits), limit_(1) {
  DTRAIN_CHECK(digits >= 1 && digits <= 6, "AdditionDataset: digits must be 1..6, got ", digits);
  for (int i = 0; i < digits; ++i) limit_ *= 10;
}

namespace {
std::string padded(int64_t value, int width) {
  std::string s = std::to_string(value);
  return std::string(static_cast<size_t>(std::max(0, width - static_cast<int>(s.size()))), '0') + s;
}
}  // namespace

std::string AdditionDataset::prompt_text(int64_t a, int64_t b) const {
  return padded(a, digits_) + "+" + padded(b, digits_) + "=";
}

std::string AdditionDataset::answer_text(int64_t a, int64_t b) const {
  std::string sum = padded(a + b, digits_ + 1);
  std::reverse(sum.begin(), sum.end());  // least significant digit first (header)
  return sum;
}

std::string AdditionDataset::problem_text(int64_t a, int64_t b) const {
  return prompt_text(a, b) + answer_text(a, b) + "\n";
}

bool AdditionDataset::is_held_out(int64_t a, int64_t b) const {
  return mix(static_cast<uint64_t>(a) * 1000003ull + static_cast<uint64_t>(b) + 0x5eed) % 10 == 0;
}

std::pair<int64_t, int64_t> AdditionDataset::draw(uint64_t& state, bool held_out) const {
  for (;;) {  // a tenth of the pairs are held out, so this ends quickly
    const auto a = static_cast<int64_t>(next(state) % static_cast<uint64_t>(limit_));
    const auto b = static_cast<int64_t>(next(state) % static_cast<uint64_t>(limit_));
    if (is_held_out(a, b) == held_out) return {a, b};
  }
}

std::vector<uint16_t> AdditionDataset::train_tokens(int64_t num_problems, uint64_t seed) const {
  DTRAIN_CHECK(num_problems > 0, "AdditionDataset: num_problems must be positive, got ", num_problems);
  uint64_t state = seed;
  std::string text;
  for (int64_t i = 0; i < num_problems; ++i) {
    auto [a, b] = draw(state, false);
    text += problem_text(a, b);
  }
  return encode_bytes(text);
}

std::vector<uint16_t> AdditionDataset::held_out_tokens(int64_t num_problems, uint64_t seed) const {
  DTRAIN_CHECK(num_problems > 0, "AdditionDataset: num_problems must be positive, got ", num_problems);
  uint64_t state = seed ^ 0xa5a5a5a5ull;
  std::string text;
  for (int64_t i = 0; i < num_problems; ++i) {
    auto [a, b] = draw(state, true);
    text += problem_text(a, b);
  }
  return encode_bytes(text);
}

std::vector<std::pair<int64_t, int64_t>> AdditionDataset::held_out(int64_t count, uint64_t seed) const {
  const int64_t available = limit_ * limit_ / 20;  // about half of the held-out tenth, so draws stay quick
  DTRAIN_CHECK(count > 0 && count <= available, "AdditionDataset: asked for ", count, " held-out problems; ", digits_,
               "-digit operands allow 1..", available);
  uint64_t state = seed ^ 0x0123456789ull;
  std::set<std::pair<int64_t, int64_t>> seen;
  std::vector<std::pair<int64_t, int64_t>> out;
  while (static_cast<int64_t>(out.size()) < count) {
    auto p = draw(state, true);
    if (seen.insert(p).second) out.push_back(p);
  }
  return out;
}

AdditionDataset::Score AdditionDataset::evaluate(const std::vector<std::pair<int64_t, int64_t>>& pairs,
                                                 const Decoder& decode) const {
  Score score;
  if (pairs.empty()) return score;
  std::vector<std::vector<int32_t>> prompts;
  prompts.reserve(pairs.size());
  for (auto& [a, b] : pairs) prompts.push_back(encode_bytes_i32(prompt_text(a, b)));
  const int64_t max_answer = digits_ + 2;  // digits of the sum, plus '\n'
  const auto outputs = decode(prompts, max_answer);
  DTRAIN_CHECK(outputs.size() == pairs.size(), "AdditionDataset::evaluate: the decoder returned ", outputs.size(),
               " answers for ", pairs.size(), " prompts");
  int64_t exact = 0, chars_right = 0, chars_total = 0;
  for (size_t i = 0; i < pairs.size(); ++i) {
    const std::string want = answer_text(pairs[i].first, pairs[i].second);
    std::string got = decode_bytes(outputs[i]);
    const size_t nl = got.find('\n');
    const bool terminated = nl != std::string::npos;
    if (terminated) got.resize(nl);
    exact += terminated && got == want;
    for (size_t k = 0; k < want.size(); ++k) chars_right += k < got.size() && got[k] == want[k];
    chars_total += static_cast<int64_t>(want.size());
  }
  score.problems = static_cast<int64_t>(pairs.size());
  score.exact = static_cast<double>(exact) / static_cast<double>(pairs.size());
  score.digits = static_cast<double>(chars_right) / static_cast<double>(chars_total);
  return score;
}

}  // namespace dtrain::data

namespace dtrain::data {

AdditionDataset::Score AdditionDataset::baseline(const std::vector<std::pair<int64_t, int64_t>>& pairs) const {
  // Most frequent character per answer position, over a deterministic sample of all pairs.
  const size_t width = static_cast<size_t>(digits_) + 1;
  std::vector<std::array<int64_t, 10>> counts(width, std::array<int64_t, 10>{});
  uint64_t state = 99;
  for (int i = 0; i < 20000; ++i) {
    const std::string ans = answer_text(static_cast<int64_t>(next(state) % static_cast<uint64_t>(limit_)),
                                        static_cast<int64_t>(next(state) % static_cast<uint64_t>(limit_)));
    for (size_t k = 0; k < width; ++k) ++counts[k][static_cast<size_t>(ans[k] - '0')];
  }
  std::string constant;
  for (auto& c : counts)
    constant.push_back(static_cast<char>('0' + (std::max_element(c.begin(), c.end()) - c.begin())));
  return evaluate(pairs, [&](const std::vector<std::vector<int32_t>>& prompts, int64_t) {
    return std::vector<std::vector<int32_t>>(prompts.size(), encode_bytes_i32(constant + "\n"));
  });
}

}  // namespace dtrain::data
