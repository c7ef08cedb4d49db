// The PyTorch baseline of the train suite: runs benchmarks/train/pytorch_gpt2.py
// (the same GPT preset, batch, sequence length and precision) as a child
// process and reads the one JSON line it prints, so dtrain's training figure
// and PyTorch's come from the same call (docs/bench.md).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace dtrain::bench {

struct PytorchRun {
  std::string python = "python3";
  std::string script;  // pytorch_gpt2.py
  std::string preset, precision, device;
  int64_t batch = 0, seq_len = 0, steps = 0;
  bool compile = false;
};

// The shell command that runs the script for `run` (arguments single-quoted).
std::string pytorch_command(const PytorchRun& run);

// Runs it and returns the last JSON object it printed: the figures, or
// {"impl": "pytorch", "skipped": reason} when torch or the device is missing,
// the script cannot be found, or it printed no JSON (its exit status named).
nlohmann::json run_pytorch_baseline(const PytorchRun& run);

}  // namespace dtrain::bench
