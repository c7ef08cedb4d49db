#include "dtrain/parallel/memory_ledger.h"

#include <cstdio>
#include <sstream>

#include "dtrain/error.h"

namespace dtrain::parallel {

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::f32:
      return "f32";
    case Precision::bf16:
      return "bf16";
    case Precision::f16:
      return "f16";
  }
  return "?";
}

Precision parse_precision(const std::string& name) {
  if (name == "f32" || name == "fp32") return Precision::f32;
  if (name == "bf16") return Precision::bf16;
  if (name == "f16" || name == "fp16") return Precision::f16;
  DTRAIN_THROW("unknown precision '", name, "'; use f32, bf16 or f16");
}

DType precision_dtype(Precision p) {
  switch (p) {
    case Precision::f32:
      return DType::f32;
    case Precision::bf16:
      return DType::bf16;
    case Precision::f16:
      return DType::f16;
  }
  return DType::f32;
}

MemoryLedger predict_model_state(int stage, int64_t p, int n, Precision precision) {
  DTRAIN_CHECK(stage >= 0 && stage <= 3, "ZeRO stage must be 0-3, got ", stage);
  DTRAIN_CHECK(n >= 1, "world size must be positive, got ", n);
  const bool mixed = precision != Precision::f32;
  const int64_t param_bytes = (mixed ? 2 : 4) * p;
  const int64_t grad_bytes = (mixed ? 2 : 4) * p;
  const int64_t optim_bytes = (mixed ? 12 : 8) * p;
  MemoryLedger m;
  m.parameters = stage >= 3 ? param_bytes / n : param_bytes;
  m.gradients = stage >= 2 ? grad_bytes / n : grad_bytes;
  m.optimizer_state = stage >= 1 ? optim_bytes / n : optim_bytes;
  if (mixed && stage >= 2) m.gradients = 4 * p / n;        // the f32 shard micro-steps accumulate into
  if (mixed && stage == 0 && n > 1) m.gradients += 4 * p;  // the f32 average of every bucket
  return m;
}

namespace {
double mib(int64_t b) {
  return static_cast<double>(b) / (1024.0 * 1024.0);
}
}  // namespace

std::string format_ledger(const MemoryLedger& m, const MemoryLedger& p, int stage, int world_size) {
  std::ostringstream os;
  char line[160];
  std::snprintf(line, sizeof(line),
                "memory ledger (per rank, ZeRO stage %d, %d ranks)    measured MiB  predicted MiB\n", stage,
                world_size);
  os << line;
  auto row = [&](const char* what, int64_t a, int64_t b, bool has_prediction) {
    if (has_prediction) {
      std::snprintf(line, sizeof(line), "  %-22s %12.3f %14.3f\n", what, mib(a), mib(b));
    } else {
      std::snprintf(line, sizeof(line), "  %-22s %12.3f %14s\n", what, mib(a), "-");
    }
    os << line;
  };
  row("parameters", m.parameters, p.parameters, true);
  row("gradients", m.gradients, p.gradients, true);
  row("optimizer state", m.optimizer_state, p.optimizer_state, true);
  row("model state (sum)", m.model_state(), p.model_state(), true);
  row("communication buffers", m.comm_buffers, 0, false);
  row("activations (estimate)", m.activations, 0, false);
  return os.str();
}

}  // namespace dtrain::parallel
