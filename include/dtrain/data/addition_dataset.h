// The built-in dataset: integer additions written as text, one per line
// ("12+345=357\n"), generated deterministically in memory, byte tokens.
//
// Operands are drawn from [0, 10^digits). A fixed tenth of all pairs (chosen
// by a hash of the pair, independent of the seed) never appears in training;
// held_out() draws evaluation problems from those, so accuracy measures
// generalisation, not memorisation.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace dtrain::data {

class AdditionDataset {
 public:
  explicit AdditionDataset(int digits = 2);

  int digits() const { return digits_; }
  static std::string problem_text(int64_t a, int64_t b);  // "a+b=c\n"
  bool is_held_out(int64_t a, int64_t b) const;
  // `num_problems` training problems (never held-out pairs) as byte tokens.
  std::vector<uint16_t> train_tokens(int64_t num_problems, uint64_t seed) const;
  // `count` held-out pairs (distinct draws from the held-out set).
  std::vector<std::pair<int64_t, int64_t>> held_out(int64_t count, uint64_t seed) const;
  // Same text stream as train_tokens but from held-out pairs (validation loss).
  std::vector<uint16_t> held_out_tokens(int64_t num_problems, uint64_t seed) const;

  struct Score {
    double exact = 0.0;   // fraction of sums answered exactly
    double digits = 0.0;  // fraction of answer characters right (position by position)
    int64_t problems = 0;
  };
  // Scores a decoder: `decode(prompts, max_new_tokens)` continues each prompt
  // ("a+b=" as byte tokens) greedily and returns the new tokens; the answer is
  // read up to the first '\n'.
  using Decoder = std::function<std::vector<std::vector<int32_t>>(const std::vector<std::vector<int32_t>>&, int64_t)>;
  Score evaluate(const std::vector<std::pair<int64_t, int64_t>>& pairs, const Decoder& decode) const;

 private:
  std::pair<int64_t, int64_t> draw(uint64_t& state, bool held_out) const;
  int digits_;
  int64_t limit_;
};

}  // namespace dtrain::data
