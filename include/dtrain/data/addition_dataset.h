// The built-in dataset: integer additions written as text, one per line,
// operands zero-padded to `digits` and the sum to digits + 1 written least
// significant digit first ("07+58=560\n": 7 + 58 = 65, padded 065, reversed),
// generated deterministically in memory, byte tokens.
//
// Why reversed: that is the order in which a sum is computed, carry by carry,
// so each answer digit depends only on the operand digits and the digit just
// written. Written most significant digit first, the first answer digit needs
// every carry at once; the tiny model then learned to generalise at a step
// that varied from ~750 to beyond 1500 with the seed and the machine's
// rounding (measured over 4 seeds: 2 of them reached 99% exact on held-out
// sums within 1500 steps, 2 stayed under 30%). Reversed, it learns within a
// minute on a CPU on every seed tried (docs/nn.md).
//
// The fixed layout puts every digit at the same offset in its line. Lines are
// line_length() tokens long: with a sequence length that is a multiple of it,
// every training row starts at the start of a line, so absolute positions
// mean the same digit in every row (train_gpt's defaults do this).
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
  std::string problem_text(int64_t a, int64_t b) const;  // "07+58=560\n"
  std::string prompt_text(int64_t a, int64_t b) const;   // "07+58="
  std::string answer_text(int64_t a, int64_t b) const;   // "560" (65, reversed)
  bool is_held_out(int64_t a, int64_t b) const;
  int64_t line_length() const { return 3 * digits_ + 4; }
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
  // (prompt_text as byte tokens) greedily and returns the new tokens; the answer is
  // read up to the first '\n'.
  using Decoder = std::function<std::vector<std::vector<int32_t>>(const std::vector<std::vector<int32_t>>&, int64_t)>;
  Score evaluate(const std::vector<std::pair<int64_t, int64_t>>& pairs, const Decoder& decode) const;
  // The score of the best constant answer (the most frequent character at
  // each answer position over all pairs): what knowing the format without
  // adding earns. A model that adds must beat it.
  Score baseline(const std::vector<std::pair<int64_t, int64_t>>& pairs) const;

 private:
  std::pair<int64_t, int64_t> draw(uint64_t& state, bool held_out) const;
  int digits_;
  int64_t limit_;
};

}  // namespace dtrain::data
