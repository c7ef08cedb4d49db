// The built-in additions dataset.
#include <algorithm>
#include <catch2/catch.hpp>
#include <sstream>

#include "dtrain/data/addition_dataset.h"
#include "dtrain/data/byte_tokenizer.h"

using namespace dtrain;

namespace {
std::string as_text(const std::vector<uint16_t>& t) {
  std::string s;
  for (auto x : t) s.push_back(static_cast<char>(x));
  return s;
}
}  // namespace

TEST_CASE("additions are deterministic, correct, and never train on held-out pairs", "[data][builtin]") {
  const data::AdditionDataset ds(2);
  // Sums are written least significant digit first: 46 -> "046" -> "640".
  CHECK(ds.problem_text(12, 34) == "12+34=640\n");
  CHECK(ds.problem_text(7, 95) == "07+95=201\n");
  CHECK(data::AdditionDataset(3).problem_text(12, 345) == "012+345=7530\n");
  const auto a = ds.train_tokens(3000, 5);
  CHECK(a == ds.train_tokens(3000, 5));
  CHECK(a != ds.train_tokens(3000, 6));
  std::istringstream lines(as_text(a));
  std::string line;
  int n = 0, held = 0;
  while (std::getline(lines, line)) {
    const auto plus = line.find('+'), eq = line.find('=');
    REQUIRE(plus != std::string::npos);
    REQUIRE(eq != std::string::npos);
    const int64_t x = std::stoll(line.substr(0, plus)), y = std::stoll(line.substr(plus + 1, eq - plus - 1));
    std::string sum = line.substr(eq + 1);
    std::reverse(sum.begin(), sum.end());
    CHECK(std::stoll(sum) == x + y);
    CHECK(x < 100);
    held += ds.is_held_out(x, y);
    ++n;
  }
  CHECK(n == 3000);
  CHECK(held == 0);
  const auto pairs = ds.held_out(200, 1);
  CHECK(pairs.size() == 200);
  for (auto& [x, y] : pairs) CHECK(ds.is_held_out(x, y));
  // About a tenth of all pairs is held out.
  int64_t count = 0;
  for (int x = 0; x < 100; ++x)
    for (int y = 0; y < 100; ++y) count += ds.is_held_out(x, y);
  CHECK(count > 800);
  CHECK(count < 1200);
  CHECK_THROWS_WITH(data::AdditionDataset(0), Catch::Contains("digits must be 1..6"));
  CHECK_THROWS_WITH(ds.held_out(100000, 1), Catch::Contains("allow 1..500"));
}

TEST_CASE("addition scoring: a perfect, a wrong and a partly right decoder", "[data][builtin]") {
  const data::AdditionDataset ds(2);
  const auto pairs = ds.held_out(50, 2);
  auto answer = [&](size_t i) { return ds.answer_text(pairs[i].first, pairs[i].second) + "\n"; };
  const auto perfect = ds.evaluate(pairs, [&](const auto& prompts, int64_t max_new) {
    std::vector<std::vector<int32_t>> out;
    for (size_t i = 0; i < prompts.size(); ++i) {
      CHECK(data::decode_bytes(prompts[i]) == ds.prompt_text(pairs[i].first, pairs[i].second));
      CHECK(max_new >= static_cast<int64_t>(answer(i).size()));
      out.push_back(data::encode_bytes_i32(answer(i) + "junk"));
    }
    return out;
  });
  CHECK(perfect.exact == 1.0);
  CHECK(perfect.digits == 1.0);
  const auto wrong = ds.evaluate(pairs, [&](const auto& prompts, int64_t) {
    return std::vector<std::vector<int32_t>>(prompts.size(), data::encode_bytes_i32("x\n"));
  });
  CHECK(wrong.exact == 0.0);
  CHECK(wrong.digits == 0.0);
  // Right digits but no newline: not exact, all digits counted.
  const auto unterminated = ds.evaluate(pairs, [&](const auto& prompts, int64_t) {
    std::vector<std::vector<int32_t>> out;
    for (size_t i = 0; i < prompts.size(); ++i) {
      std::string a = answer(i);
      a.pop_back();
      out.push_back(data::encode_bytes_i32(a));
    }
    return out;
  });
  CHECK(unterminated.exact == 0.0);
  CHECK(unterminated.digits == 1.0);
  // The format-only baseline: the first sum digit is '0' or '1' about half the time each.
  const auto base = ds.baseline(pairs);
  CHECK(base.exact < 0.1);
  CHECK(base.digits > 0.15);
  CHECK(base.digits < 0.35);
  CHECK(ds.line_length() == 10);
  CHECK_THROWS_WITH(ds.evaluate(pairs, [](const auto&, int64_t) { return std::vector<std::vector<int32_t>>{}; }),
                    Catch::Contains("returned 0 answers for 50 prompts"));
}
