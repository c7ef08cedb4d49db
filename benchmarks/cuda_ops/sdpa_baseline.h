// PyTorch's scaled_dot_product_attention as the baseline of the attention
// benchmarks (bench_cuda_ops, dev/attention): runs dev/attention_sdpa.py in
// a child process with the benchmark's shapes and reads its JSON lines back.
// torch is never a build or CI dependency: when python3, torch or a CUDA
// device is missing, the result is one row with "skipped" and the reason.
#pragma once

#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace dtrain::bench {

struct SdpaRequest {
  std::string python = "python3";
  std::string script;  // path of attention_sdpa.py
  int64_t B = 8, NH = 12, hs = 64;
  std::vector<int64_t> T;
  std::string dtype = "bf16";
  bool full = false;  // full mask instead of causal
  int iters = 20;
};

// One JSON object per T (impl, T, fwd_ms, fwd_tflops, bwd_tflops,
// fwd_bwd_tflops, torch), or a single {"skipped": reason}.
inline std::vector<nlohmann::json> run_sdpa_baseline(const SdpaRequest& r) {
  std::ostringstream cmd;
  cmd << r.python << " '" << r.script << "' --B " << r.B << " --NH " << r.NH << " --hs " << r.hs << " --dtype "
      << r.dtype << " --iters " << r.iters << (r.full ? " --full" : "") << " --T ";
  for (size_t i = 0; i < r.T.size(); ++i) cmd << (i ? "," : "") << r.T[i];
  const std::string command = cmd.str();
  std::vector<nlohmann::json> rows;
  std::string other_output;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe != nullptr) {
    char line[4096];
    while (std::fgets(line, sizeof line, pipe) != nullptr) {
      const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_object()) {
        rows.push_back(j);
      } else if (other_output.size() < 400) {
        other_output += line;
      }
    }
    ::pclose(pipe);
  }
  if (rows.empty()) {
    std::string why = "'" + command + "' printed no result";
    if (!other_output.empty()) why += ": " + other_output.substr(0, other_output.find('\n'));
    rows.push_back({{"impl", "sdpa"}, {"skipped", why}});
  }
  return rows;
}

// The reason when the baseline did not run, else "".
inline std::string sdpa_skipped_reason(const std::vector<nlohmann::json>& rows) {
  for (const auto& j : rows) {
    if (j.contains("skipped")) return j["skipped"].get<std::string>();
  }
  return "";
}

}  // namespace dtrain::bench
