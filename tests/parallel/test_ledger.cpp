// The ZeRO paper's model-state formula and the trace's overlap arithmetic.
#include <catch2/catch.hpp>

#include "dtrain/error.h"
#include "dtrain/parallel/memory_ledger.h"
#include "dtrain/parallel/trace.h"

using namespace dtrain::parallel;

TEST_CASE("predicted model-state bytes follow the ZeRO paper and the engine's f32 gradients", "[parallel]") {
  const int64_t p = 1000000;
  // bf16, K = 12, N = 64 (the paper's example ratios), with the engine's f32
  // gradients where it keeps the reduced gradient exact (memory_ledger.h):
  // + 4P at stage 0 over several ranks, a 4P/N shard at stages 2-3.
  CHECK(predict_model_state(0, p, 1, Precision::bf16).model_state() == 16 * p);
  CHECK(predict_model_state(0, p, 64, Precision::bf16).model_state() == 20 * p);
  CHECK(predict_model_state(1, p, 64, Precision::bf16).model_state() == 4 * p + 12 * p / 64);
  CHECK(predict_model_state(2, p, 64, Precision::bf16).model_state() == 2 * p + 16 * p / 64);
  CHECK(predict_model_state(3, p, 64, Precision::bf16).model_state() == 2 * p / 64 + 16 * p / 64);
  CHECK(predict_model_state(2, p, 4, Precision::f16).gradients == p);
  // f32 AdamW: 4P params, 4P grads, 8P state.
  const auto s2 = predict_model_state(2, p, 4, Precision::f32);
  CHECK(s2.parameters == 4 * p);
  CHECK(s2.gradients == p);
  CHECK(s2.optimizer_state == 2 * p);
  CHECK(predict_model_state(3, p, 4, Precision::f32).model_state() == 4 * p);
  CHECK_THROWS_WITH(predict_model_state(4, p, 2, Precision::f32), Catch::Contains("stage must be 0-3"));
  CHECK_THROWS_WITH(parse_precision("fp8"), Catch::Contains("use f32, bf16 or f16"));
  CHECK(parse_precision("bf16") == Precision::bf16);
}

TEST_CASE("overlap measures the part of communication inside compute", "[parallel]") {
  std::vector<TraceEvent> ev = {{"backward", "m", 0, 100}, {"reduce", "b0", 50, 150}, {"reduce", "b1", 140, 160}};
  const auto s = overlap(ev, "reduce", "backward");
  CHECK(s.total_us == Approx(110));
  CHECK(s.hidden_us == Approx(50));
  CHECK(s.fraction() == Approx(50.0 / 110.0));
  Trace t;
  const size_t i = t.begin("gather", "u");
  t.end(i);
  REQUIRE(t.events().size() == 1);
  CHECK(t.events()[0].end_us >= t.events()[0].start_us);
  CHECK(t.to_jsonl().find("\"kind\":\"gather\"") != std::string::npos);
}
