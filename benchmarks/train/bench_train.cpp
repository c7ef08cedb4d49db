// bench_train: training throughput of GPT presets, against the GEMM figure
// measured in the same run.
//
// Achieved FLOP/s counts 6 x (matmul parameters) per token plus causal
// attention (GPT::flops_per_token). The baseline is ops::matmul at the MLP's
// shape ([B*T, C] x [C, 4C], the largest GEMM of a step) on the same device,
// (best of a measurement before and one after the steps), so "fraction of GEMM" says how much of the machine's matmul
// speed a whole training step (forward, backward, AdamW, clipping) keeps.
//
//   bench_train                      # tiny (B=16, T=64) and gpt2-124m (B=4, T=256) on CPU
//   bench_train --quick              # fewer steps
//   bench_train --preset gpt2-124m --device cuda --batch 8 --seq-len 1024
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "dtrain/nn/gpt.h"
#include "dtrain/ops.h"
#include "dtrain/optim/adamw.h"
#include "dtrain/optim/clip.h"

using namespace dtrain;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Host read of one element: waits for the device's queued work.
void sync(const Tensor& t) {
  (void)t.narrow(0, 1).to(Device::cpu());
}

// GFLOP/s of out[M, N] = a[M, K] @ b[K, N]: best of `reps` timed calls after a warm-up.
double gemm_gflops(int64_t m, int64_t k, int64_t n, Device device, int reps) {
  Tensor a = Tensor::full({m, k}, 0.5, DType::f32, device);
  Tensor b = Tensor::full({k, n}, 0.25, DType::f32, device);
  Tensor out = Tensor::empty({m, n}, DType::f32, device);
  ops::matmul(out, a, b);
  sync(out);
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    ops::matmul(out, a, b);
    sync(out);
    best = std::min(best, seconds_since(t0));
  }
  return 2.0 * static_cast<double>(m) * static_cast<double>(k) * static_cast<double>(n) / best / 1e9;
}

struct Result {
  std::string preset;
  int64_t batch, seq_len, params, steps;
  double step_ms, fwd_ms, bwd_ms, opt_ms, tokens_per_s, gflops, gemm_gflops;
};

Result bench_preset(const std::string& preset, int64_t batch, int64_t seq_len, int64_t steps, Device device,
                    int gemm_reps) {
  nn::GPTConfig config = nn::GPTConfig::preset(preset);
  nn::GPT model(config, device, 1);
  optim::AdamW opt(optim::param_groups(model, 0.1f));
  Tensor tokens = Tensor::empty({batch, seq_len}, DType::i32);
  for (int64_t i = 0; i < tokens.numel(); ++i) {
    tokens.data<int32_t>()[i] = static_cast<int32_t>((i * 7919) % config.vocab_size);
  }
  Result r{preset, batch, seq_len, model.num_parameters(), steps, 0, 0, 0, 0, 0, 0, 0};
  // The GEMM figure at this model's MLP shape, measured before and after the
  // training steps; the better of the two is the baseline (a conservative ratio
  // on a machine whose load changes during the run).
  r.gemm_gflops = gemm_gflops(batch * seq_len, config.n_embd, 4 * config.n_embd, device, gemm_reps);
  double fwd = 0, bwd = 0, upd = 0;
  for (int64_t s = 0; s <= steps; ++s) {  // step 0 allocates and warms up: not timed
    const auto t0 = Clock::now();
    model.zero_grad();
    model.forward(tokens, tokens);  // returns the loss to the host: synchronises
    const auto t1 = Clock::now();
    model.backward();
    const float norm = optim::grad_norm(opt.grads());  // host read: synchronises
    const auto t2 = Clock::now();
    opt.step(1e-4f, optim::clip_scale(norm, 1.0f));
    sync(model.embed.wte.value);
    const auto t3 = Clock::now();
    if (s == 0) continue;
    fwd += std::chrono::duration<double>(t1 - t0).count();
    bwd += std::chrono::duration<double>(t2 - t1).count();
    upd += std::chrono::duration<double>(t3 - t2).count();
  }
  r.gemm_gflops =
      std::max(r.gemm_gflops, gemm_gflops(batch * seq_len, config.n_embd, 4 * config.n_embd, device, gemm_reps));
  const double total = fwd + bwd + upd;
  r.step_ms = 1e3 * total / static_cast<double>(steps);
  r.fwd_ms = 1e3 * fwd / static_cast<double>(steps);
  r.bwd_ms = 1e3 * bwd / static_cast<double>(steps);
  r.opt_ms = 1e3 * upd / static_cast<double>(steps);
  r.tokens_per_s = static_cast<double>(batch * seq_len * steps) / total;
  r.gflops = model.flops_per_token(seq_len) * r.tokens_per_s / 1e9;
  return r;
}

}  // namespace

// Only option setup runs outside the try below; what it can throw (bad_alloc) may end the program.
int main(int argc, char** argv) {  // NOLINT(bugprone-exception-escape)
  CLI::App app{"bench_train: GPT training throughput vs the in-run GEMM figure"};
  std::vector<std::string> presets = {"tiny", "gpt2-124m"};
  std::string device_name = "cpu", metrics_out;
  int64_t batch = 0, seq_len = 0, steps = 0;
  bool quick = false;
  app.add_option("--preset", presets, "presets to measure (repeatable)")->capture_default_str();
  app.add_option("--device", device_name, "cpu or cuda[:N]")->capture_default_str();
  app.add_option("--batch", batch, "batch (default: tiny 16, others 4)");
  app.add_option("--seq-len", seq_len, "sequence length (default: tiny 64, others 256)");
  app.add_option("--steps", steps, "timed steps per preset (default: tiny 20, others 3; --quick fewer)");
  app.add_flag("--quick", quick, "fewer steps (a smoke run)");
  app.add_option("--metrics-out", metrics_out, "JSON Lines results");
  CLI11_PARSE(app, argc, argv);
  try {
    const Device device = Device::parse(device_name);
    check_device_available(device);
    std::FILE* metrics = metrics_out.empty() ? nullptr : std::fopen(metrics_out.c_str(), "w");
    DTRAIN_CHECK(metrics_out.empty() || metrics, "cannot open --metrics-out file ", metrics_out);
    std::printf("%-10s %5s %5s %9s %9s %9s %9s %9s %10s %9s %9s %7s\n", "preset", "B", "T", "params", "step_ms",
                "fwd_ms", "bwd_ms", "opt_ms", "tok/s", "GFLOP/s", "GEMM", "of_GEMM");
    int n = 0;
    for (const auto& preset : presets) {
      const bool tiny = preset == "tiny";
      const int64_t b = batch ? batch : (tiny ? 16 : 4);
      const int64_t t = seq_len ? seq_len : (tiny ? 64 : 256);
      const int64_t s = steps ? steps : (tiny ? (quick ? 5 : 20) : (quick ? 1 : 3));
      const Result r = bench_preset(preset, b, t, s, device, quick ? 3 : 5);
      const double ratio = r.gflops / r.gemm_gflops;
      std::printf("%-10s %5lld %5lld %8.1fM %9.1f %9.1f %9.1f %9.1f %10.0f %9.2f %9.2f %6.1f%%\n", preset.c_str(),
                  static_cast<long long>(b), static_cast<long long>(t), static_cast<double>(r.params) / 1e6, r.step_ms,
                  r.fwd_ms, r.bwd_ms, r.opt_ms, r.tokens_per_s, r.gflops, r.gemm_gflops, 100.0 * ratio);
      std::fflush(stdout);
      ++n;
      if (metrics) {
        const nlohmann::json j = {{"preset", preset},
                                  {"device", device.str()},
                                  {"batch", b},
                                  {"seq_len", t},
                                  {"params", r.params},
                                  {"steps", s},
                                  {"step", n},
                                  {"loss", nullptr},
                                  {"step_ms", r.step_ms},
                                  {"fwd_ms", r.fwd_ms},
                                  {"bwd_ms", r.bwd_ms},
                                  {"opt_ms", r.opt_ms},
                                  {"tokens_per_s", r.tokens_per_s},
                                  {"gflops", r.gflops},
                                  {"gemm_gflops", r.gemm_gflops},
                                  {"fraction_of_gemm", ratio}};
        std::fprintf(metrics, "%s\n", j.dump().c_str());
      }
    }
    if (metrics) {
      std::fprintf(metrics, "%s\n", nlohmann::json({{"final", true}, {"presets", n}}).dump().c_str());
      std::fclose(metrics);
    }
    std::printf(
        "achieved GFLOP/s = flops_per_token x tokens/s (6 x matmul params + causal attention); "
        "GEMM = ops::matmul [B*T, C] x [C, 4C] in this run\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_train: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
