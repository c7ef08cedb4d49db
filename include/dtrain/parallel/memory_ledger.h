// Memory ledger: the bytes one rank holds for each kind of training state,
// next to what the ZeRO paper predicts for the stage.
//
// Prediction (P parameters, N ranks, bytes per rank):
//   mixed precision (bf16/f16 params and grads, K = 12: f32 master + 2 moments)
//     stage 0: 2P + 2P + KP       stage 1: 2P + 2P + KP/N
//     stage 2: 2P + (2 + K)P/N    stage 3: (2 + 2 + K)P/N
//   f32 with AdamW: the same shapes with 4P parameters, 4P gradients and 8P
//   optimizer state (two f32 moments; the master is the parameter itself).
// Where the engine keeps the reduced gradient in f32 so that it stays the
// exact f32 average, mixed precision departs from the paper's 2-byte
// gradients, and the prediction says so:
//   stages 2-3: the gradient shard is f32 (4P/N): micro-steps accumulate in it;
//   stage 0 at N > 1: + 4P, the f32 average of every bucket (2P + 4P).
// Stage 0 at N = 1 reduces nothing: the 2-byte gradient is read as it is
// (16 bytes per parameter), and stage 1 keeps its f32 shard (4P/N <= 2P)
// inside the 2-byte gradient buckets, which are dead once reduced.
#pragma once

#include <cstdint>
#include <string>

#include "dtrain/dtype.h"

namespace dtrain::parallel {

enum class Precision { f32, bf16, f16 };
const char* precision_name(Precision p);
// "f32", "bf16", "f16"; throws naming the accepted values.
Precision parse_precision(const std::string& name);
// The dtype a model is built in under the policy (parameters, activations and
// gradients; GPTConfig::param_dtype = compute_dtype): f32, bf16 or f16.
DType precision_dtype(Precision p);

struct MemoryLedger {
  int64_t parameters = 0;       // parameter storage held between steps (full or shard, compute dtype)
  int64_t gradients = 0;        // gradient storage held between steps (full buckets or the f32 shard)
  int64_t optimizer_state = 0;  // moments (+ separate f32 master weights in mixed precision)
  int64_t comm_buffers = 0;     // peak of transient buffers: gathered units, bucket gradients, reduce outputs
  // Estimate: the device's peak (since the caller's last reset_peak_memory)
  // at the last step() minus everything above; 0 before the first step.
  int64_t activations = 0;

  int64_t model_state() const { return parameters + gradients + optimizer_state; }
};

// The ZeRO paper's per-rank model-state bytes for `stage` (0-3), P parameters,
// N ranks, with the byte counts of the precision policy (see the top of this file).
MemoryLedger predict_model_state(int stage, int64_t num_parameters, int world_size, Precision precision);

// A small table: measured vs predicted per kind, in MiB, with the ratio.
std::string format_ledger(const MemoryLedger& measured, const MemoryLedger& predicted, int stage, int world_size);

}  // namespace dtrain::parallel
