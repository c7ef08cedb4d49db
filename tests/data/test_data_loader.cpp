// DataLoader: batches and targets, rank shares, shard transitions, exact resume.
#include <catch2/catch.hpp>
#include <numeric>

#include "data_test_util.h"
#include "dtrain/data/data_loader.h"

using namespace dtrain;

namespace {
std::shared_ptr<data::TokenSource> counting(int64_t start, int64_t n) {
  std::vector<uint16_t> t(static_cast<size_t>(n));
  std::iota(t.begin(), t.end(), static_cast<uint16_t>(start));
  return std::make_shared<data::MemoryTokens>(std::move(t), "counting");
}
std::vector<int32_t> values(const Tensor& t) {
  return std::vector<int32_t>(t.data<int32_t>(), t.data<int32_t>() + t.numel());
}
}  // namespace

TEST_CASE("batches are consecutive windows with targets shifted by one", "[data][loader]") {
  data::DataLoader loader({counting(0, 100)}, 2, 4);
  const auto& b = loader.next();
  CHECK(b.inputs.shape() == Shape{2, 4});
  CHECK(values(b.inputs) == std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6, 7});
  CHECK(values(b.targets) == std::vector<int32_t>{1, 2, 3, 4, 5, 6, 7, 8});
  CHECK(values(loader.next().inputs)[0] == 8);
}

TEST_CASE("rank shares partition every global batch, across shard changes", "[data][loader]") {
  // Two shards of different lengths, so the loader changes shard and wraps around.
  auto a = counting(0, 61), b = counting(1000, 45);
  const int64_t global = 4, seq = 5;
  data::DataLoader whole({a, b}, global, seq);
  std::vector<data::DataLoader> ranks;
  for (int64_t r = 0; r < 4; ++r)
    ranks.emplace_back(std::vector<std::shared_ptr<data::TokenSource>>{a, b}, global, seq, r, 4);
  data::DataLoader pairs0({a, b}, global, seq, 0, 2), pairs1({a, b}, global, seq, 1, 2);
  for (int step = 0; step < 9; ++step) {
    const auto& wb = whole.next();
    const auto want_in = values(wb.inputs);
    const auto want_tg = values(wb.targets);
    std::vector<int32_t> got_in, got_tg;
    for (auto& r : ranks) {
      const auto& share = r.next();
      CHECK(share.inputs.shape() == Shape{1, seq});
      const auto i = values(share.inputs), t = values(share.targets);
      got_in.insert(got_in.end(), i.begin(), i.end());
      got_tg.insert(got_tg.end(), t.begin(), t.end());
    }
    CHECK(got_in == want_in);
    CHECK(got_tg == want_tg);
    auto h0 = values(pairs0.next().inputs), h1 = values(pairs1.next().inputs);
    h0.insert(h0.end(), h1.begin(), h1.end());
    CHECK(h0 == want_in);
    for (auto& r : ranks) CHECK(r.position() == whole.position());
  }
  CHECK(whole.position().epoch >= 1);  // it wrapped
}

TEST_CASE("position report and restore resume exactly", "[data][loader]") {
  TempDir dir;
  std::vector<std::string> paths;
  for (int s = 0; s < 3; ++s) {
    std::vector<uint16_t> t(static_cast<size_t>(50 + 13 * s));
    std::iota(t.begin(), t.end(), static_cast<uint16_t>(100 * s));
    paths.push_back(dir.file("shard_" + std::to_string(s) + ".bin"));
    data::write_token_shard(paths.back(), t);
  }
  auto first = data::DataLoader::from_pattern(dir.file("shard_*.bin"), 3, 4, 1, 3);
  for (int i = 0; i < 7; ++i) first.next();
  const data::LoaderPosition saved = first.position();
  std::vector<std::vector<int32_t>> expected;
  expected.reserve(11);
  for (int i = 0; i < 11; ++i) expected.push_back(values(first.next().inputs));

  auto resumed = data::DataLoader::from_pattern(dir.file("shard_*.bin"), 3, 4, 1, 3);
  resumed.set_position(saved);
  CHECK(resumed.position() == saved);
  for (int i = 0; i < 11; ++i) CHECK(values(resumed.next().inputs) == expected[static_cast<size_t>(i)]);
  CHECK(resumed.position() == first.position());
  CHECK_THROWS_WITH(resumed.set_position({0, 5, 0}), Catch::Contains("does not exist in these 3 sources"));
  CHECK_THROWS_WITH(resumed.set_position({0, 0, 1000}), Catch::Contains("does not exist"));
}

TEST_CASE("bad loader configurations are refused", "[data][loader]") {
  CHECK_THROWS_WITH(data::DataLoader({}, 2, 4), Catch::Contains("no data was given"));
  CHECK_THROWS_WITH(data::DataLoader({counting(0, 0)}, 2, 4),
                    Catch::Contains("has 0 tokens, fewer than one global batch"));
  CHECK_THROWS_WITH(data::DataLoader({counting(0, 8)}, 2, 4),
                    Catch::Contains("fewer than one global batch needs (2 x 4 + 1 = 9)"));
  CHECK_NOTHROW(data::DataLoader({counting(0, 9)}, 2, 4));
  CHECK_THROWS_WITH(data::DataLoader({counting(0, 100)}, 3, 4, 0, 2),
                    Catch::Contains("does not split evenly over 2 ranks"));
  CHECK_THROWS_WITH(data::DataLoader({counting(0, 100)}, 4, 4, 2, 2),
                    Catch::Contains("rank 2 is outside a world of size 2"));
  CHECK_THROWS_WITH(data::DataLoader({counting(0, 100)}, 0, 4), Catch::Contains("must be positive"));
}
