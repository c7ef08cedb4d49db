// The train suite: GPT training throughput across the job, as dtrain trains.
//
// Every rank trains the same preset under parallel::DataParallel (ZeRO stage
// given by --zero-stage or chosen: the smallest stage whose model state fits
// comfortably); tokens/s counts the whole job's tokens. MFU = achieved FLOP/s
// per rank (GPT::flops_per_token x tokens/s) over the peak of the compute
// dtype: the datasheet on a GPU, the FMA loop measured in this run on a CPU.
// The step-time spread compares the slowest rank's mean step with the median.
//
// Precision: --precision, by default bf16 on a GPU (bf16 parameters, f32
// masters and moments in the engine, as the GPU is meant to train) and f32 on
// a CPU. ZeRO-3 builds the model deferred, so no rank holds it whole.
//
// The preset is the largest that fits: model state (16 bytes per parameter
// in f32 and in bf16 with f32 masters alike, divided by the ranks in the
// sharded stages) plus activations must stay under half of the memory this
// rank can use. On a CPU, --quick trains "tiny" and a full run gpt2-124m.
// Time bound: the steps stop early (every rank together) past --row-seconds x 5.
//
// PyTorch beside dtrain: on a GPU (or with --pytorch on), rank 0 then runs
// benchmarks/train/pytorch_gpt2.py on the same preset, batch, sequence length
// and precision (pytorch_baseline.h) and prints its figure next to dtrain's,
// with the ratio; without torch it says so in one line.
#include <algorithm>
#include <optional>
#include <vector>

#include "bench_suite.h"
#include "datasheet_peaks.h"
#include "device_facts.h"
#include "dtrain/allocator.h"
#include "dtrain/nn/gpt.h"
#include "dtrain/nn/module.h"
#include "dtrain/optim/adamw.h"
#include "dtrain/parallel/data_parallel.h"
#include "machine_baselines.h"
#include "pytorch_baseline.h"

namespace dtrain::bench {
namespace {

struct TrainOptions {
  std::string preset;     // empty: chosen
  std::string precision;  // empty: bf16 on a GPU, f32 on a CPU
  int zero_stage = -1;    // -1: chosen
  int64_t batch = 0, seq_len = 0, steps = 0;
  std::string pytorch = "auto";  // auto: on a GPU; on; off
  std::string pytorch_script = DTRAIN_PYTORCH_GPT2_SCRIPT;
  std::string python = "python3";
  bool pytorch_compile = false;
};

// Parameters of a GPT config, without building it.
double approx_params(const nn::GPTConfig& c) {
  const double C = static_cast<double>(c.n_embd);
  return 12.0 * static_cast<double>(c.n_layer) * C * C + static_cast<double>(c.vocab_size + c.max_seq_len) * C;
}

// Activation bytes of one step, roughly: about 40 f32 values of width C per
// token per layer, plus the logits.
double approx_activation_bytes(const nn::GPTConfig& c, int64_t batch, int64_t seq) {
  const double tokens = static_cast<double>(batch * seq);
  return tokens * (40.0 * static_cast<double>(c.n_layer * c.n_embd) + 2.0 * static_cast<double>(c.vocab_size)) * 4;
}

class TrainSuite final : public BenchSuite {
 public:
  const char* name() const override { return "train"; }
  const char* description() const override { return "GPT training throughput and MFU"; }

  void add_options(CLI::App& app) override {
    auto* g = app.add_option_group("train", "options of --suite train");
    g->add_option("--preset", o_.preset, "GPT preset (default: the largest that fits)");
    g->add_option("--precision", o_.precision, "f32, bf16 or f16 (default: bf16 on a GPU, f32 on a CPU)")
        ->check(CLI::IsMember({"f32", "bf16", "f16"}));
    g->add_option("--zero-stage", o_.zero_stage, "ZeRO stage 0-3 (default: chosen)")->check(CLI::Range(0, 3));
    g->add_option("--batch", o_.batch, "sequences per rank per step");
    g->add_option("--seq-len", o_.seq_len, "tokens per sequence");
    g->add_option("--steps", o_.steps, "timed steps");
    g->add_option("--pytorch", o_.pytorch, "the PyTorch baseline: auto (on a GPU), on, off")
        ->check(CLI::IsMember({"auto", "on", "off"}));
    g->add_option("--pytorch-script", o_.pytorch_script, "path of pytorch_gpt2.py")->capture_default_str();
    g->add_option("--python", o_.python, "interpreter for the PyTorch baseline")->capture_default_str();
    g->add_flag("--pytorch-compile", o_.pytorch_compile, "torch.compile the PyTorch model");
  }

  void run(BenchContext& ctx) override {
    const bool gpu = ctx.device.is_cuda(), quick = ctx.common.quick;
    const int world = ctx.comm.size();
    const int64_t batch = o_.batch > 0 ? o_.batch : (gpu ? 8 : 4);
    const int64_t seq = o_.seq_len > 0 ? o_.seq_len : (gpu ? 1024 : (quick ? 64 : 128));
    const int64_t steps = o_.steps > 0 ? o_.steps : (quick ? 3 : (gpu ? 20 : 5));
    const double memory = usable_memory(ctx);
    std::string preset = o_.preset;
    int stage = o_.zero_stage;
    choose(gpu, quick, world, batch, seq, memory, preset, stage);
    const parallel::Precision precision =
        parallel::parse_precision(o_.precision.empty() ? (gpu ? "bf16" : "f32") : o_.precision);
    nn::GPTConfig config = nn::GPTConfig::preset(preset);
    config.max_seq_len = std::max(config.max_seq_len, seq);
    config.param_dtype = config.compute_dtype = parallel::precision_dtype(precision);
    if (ctx.lead())
      std::printf("# train: %s, %s, ZeRO stage %d, %d rank(s), batch %lld x %lld tokens per rank, %lld steps\n",
                  preset.c_str(), parallel::precision_name(precision), stage, world, static_cast<long long>(batch),
                  static_cast<long long>(seq), static_cast<long long>(steps));
    ctx.progress.say("train", "building " + preset);
    std::optional<nn::DeferredInit> deferred;
    if (stage == 3) deferred.emplace();  // each rank fills only its shards
    reset_peak_memory(ctx.device);
    nn::GPT model(config, ctx.device, 1);
    deferred.reset();
    parallel::DataParallelOptions dp_options;
    dp_options.stage = stage;
    dp_options.precision = precision;
    parallel::DataParallel dp(model, ctx.comm_shared, dp_options);
    optim::AdamW opt(dp.param_groups(0.1f));
    Tensor tokens = Tensor::empty({batch, seq}, DType::i32);
    for (int64_t i = 0; i < tokens.numel(); ++i)
      tokens.data<int32_t>()[i] = static_cast<int32_t>((i * 7919 + ctx.comm.rank() * 104729) % config.vocab_size);
    const double limit = 5 * ctx.common.row_limit();
    const auto start = Clock::now();
    std::vector<double> step_s;
    float loss = 0;
    bool cut = false;
    for (int64_t s = 0; s <= steps; ++s) {  // step 0 allocates and warms up: not timed
      const auto t0 = Clock::now();
      loss = model.forward(tokens, tokens, dp.grad_scale());
      model.backward();
      dp.step(opt, 1e-4f, 1.0f);  // the gradient norm is all-reduced: every rank has finished
      if (s > 0) step_s.push_back(seconds_since(t0));
      ctx.progress.say("train", "step " + std::to_string(s) + "/" + std::to_string(steps));
      // Every rank stops together: the slowest rank's elapsed time decides.
      Tensor elapsed = Tensor::full({1}, seconds_since(start), DType::f32);
      ctx.comm.all_reduce(elapsed, comm::ReduceOp::max).wait();
      if (s < steps && s > 0 && elapsed.item(0) > limit) {
        cut = true;
        break;
      }
    }
    report(ctx, preset, stage, config, model, batch, seq, step_s, loss, cut, memory);
  }

  // PyTorch's figure for the same run (rank 0), printed next to dtrain's;
  // null when not asked for. A check compares the tokens/s (ok at 0.8 of
  // PyTorch's; failed only below a tenth, a broken path).
  nlohmann::json pytorch_beside(BenchContext& ctx, const std::string& preset, const nn::GPTConfig& config,
                                int64_t batch, int64_t seq, double dtrain_step_ms, int64_t dtrain_peak) const {
    if (o_.pytorch == "off" || (o_.pytorch == "auto" && !ctx.device.is_cuda())) return nullptr;
    PytorchRun run{o_.python,
                   o_.pytorch_script,
                   preset,
                   config.compute_dtype == DType::bf16 ? "bf16" : "f32",
                   ctx.device.str(),
                   batch,
                   seq,
                   o_.steps > 0 ? o_.steps : 10,
                   o_.pytorch_compile};
    ctx.progress.say("train", "PyTorch baseline: " + pytorch_command(run));
    nlohmann::json torch = run_pytorch_baseline(run);
    if (torch.contains("skipped")) {
      std::printf("# pytorch: skipped (%s)\n", torch["skipped"].get<std::string>().c_str());
      return torch;
    }
    const double torch_ms = torch.value("step_ms_median", 0.0);
    const double ratio = dtrain_step_ms > 0 ? torch_ms / dtrain_step_ms : 0.0;  // tokens/s of dtrain / PyTorch
    const auto& peak = torch["peak_memory_bytes"];
    char torch_peak[32] = "-";
    if (peak.is_number()) std::snprintf(torch_peak, sizeof torch_peak, "%.2f GiB", peak.get<double>() / (1 << 30));
    std::printf(
        "# pytorch %s: %.0f tokens/s, %.1f ms per step (median), peak memory %s; dtrain %.0f tokens/s, %.1f ms, "
        "peak %.2f GiB: dtrain / pytorch = %.2fx tokens/s\n",
        torch.value("torch", std::string("?")).c_str(), torch.value("tokens_per_s", 0.0), torch_ms, torch_peak,
        static_cast<double>(batch * seq) / (dtrain_step_ms / 1e3), dtrain_step_ms,
        static_cast<double>(dtrain_peak) / (1 << 30), ratio);
    torch["dtrain_over_pytorch"] = ratio;
    ctx.report.add_check({"train", "tokens/s vs PyTorch " + preset, ratio, "ratio", 1.0,
                          "PyTorch " + torch.value("torch", std::string("?")) + " measured in this run", 0.8, 0.1,
                          false, "PyTorch step " + std::to_string(torch_ms) + " ms"});
    return torch;
  }

 private:
  // Bytes this rank may use: its GPU's memory, or the host's divided among the node's ranks.
  static double usable_memory(const BenchContext& ctx) {
    if (ctx.device.is_cuda()) {
      const auto& devices = ctx.facts["gpu"]["devices"];
      const size_t i = static_cast<size_t>(ctx.device.index());
      if (i < devices.size()) return devices[i]["memory_bytes"].get<double>();
    }
    const auto& m = ctx.facts["cpu"]["memory_bytes"];
    const int local = comm::job_env_from_environment().local_world_size;
    return m.is_null() ? 8e9 : m.get<double>() / std::max(1, local);
  }

  static void choose(bool gpu, bool quick, int world, int64_t batch, int64_t seq, double memory, std::string& preset,
                     int& stage) {
    std::vector<std::string> candidates = {preset};
    if (preset.empty()) {
      if (gpu)
        candidates = {"gpt2-350m", "gpt2-124m", "tiny"};
      else
        candidates = {quick ? "tiny" : "gpt2-124m", "tiny"};
    }
    for (const auto& p : candidates) {
      const nn::GPTConfig c = nn::GPTConfig::preset(p);
      const double state = 16.0 * approx_params(c);
      const double act = approx_activation_bytes(c, batch, seq);
      for (int st = 0; st <= 3; ++st) {
        if (stage >= 0 && st != stage) continue;
        const double per_rank = (st == 0   ? state
                                 : st == 3 ? state / world
                                           : 4 * approx_params(c) + 12 * approx_params(c) / world);
        if (per_rank + act <= 0.5 * memory || (p == candidates.back() && (stage >= 0 || st == 3))) {
          preset = p;
          stage = st;
          return;
        }
      }
    }
  }

  void report(BenchContext& ctx, const std::string& preset, int stage, const nn::GPTConfig& config,
              const nn::GPT& model, int64_t batch, int64_t seq, const std::vector<double>& step_s, float loss, bool cut,
              double memory) {
    const int world = ctx.comm.size();
    double mean = 0;
    for (double s : step_s) mean += s;
    mean /= std::max<size_t>(1, step_s.size());
    // Every rank's mean step, gathered.
    std::vector<double> per_rank = gather_from_ranks(ctx.comm, mean * 1e3);  // ms
    std::vector<double> sorted = per_rank;
    std::sort(sorted.begin(), sorted.end());
    const double median = sorted[sorted.size() / 2] / 1e3, slowest = sorted.back() / 1e3;  // s
    const double tokens_per_s = static_cast<double>(batch * seq * world) / slowest;
    const double flops_per_rank = model.flops_per_token(seq) * tokens_per_s / world;
    // Peak of the compute dtype: bf16 (f16's dense peak is the same on these
    // parts), or f32 (TF32 when DTRAIN_ALLOW_TF32=1).
    double peak = 0;
    std::string peak_kind;
    if (ctx.device.is_cuda()) {
      const auto& devices = ctx.facts["gpu"]["devices"];
      const DatasheetPeak* p = devices.empty() ? nullptr : find_datasheet_peak(devices[0]["name"].get<std::string>());
      const char* tf32 = std::getenv("DTRAIN_ALLOW_TF32");
      const bool use_tf32 = tf32 != nullptr && std::string(tf32) == "1";
      if (p != nullptr) {
        const bool half = config.compute_dtype == DType::bf16 || config.compute_dtype == DType::f16;
        peak = 1e12 * (half ? p->bf16_tflops : use_tf32 ? p->tf32_tflops : p->f32_tflops);
        peak_kind = std::string("datasheet ") +
                    (half       ? dtype_name(config.compute_dtype)
                     : use_tf32 ? "TF32"
                                : "f32") +
                    " peak: " + p->source;
      }
    } else {
      peak = 1e9 * cpu_fma_gflops(cpu_threads_per_rank(), ctx.common.quick ? 0.3 : 1.0);
      peak_kind = "FMA loop measured in this run";
    }
    if (!ctx.lead()) return;
    const double mfu = peak > 0 ? flops_per_rank / peak : 0;
    const int64_t peak_bytes = memory_stats(ctx.device).peak_bytes;
    std::printf("# train: %.0f tokens/s (job), %.1f ms per step (slowest rank), loss %.3f, MFU %.1f%% of %s\n",
                tokens_per_s, slowest * 1e3, loss, 100 * mfu, peak_kind.empty() ? "(no peak)" : peak_kind.c_str());
    const nlohmann::json row = {
        {"preset", preset},
        {"precision", dtype_name(config.compute_dtype)},
        {"zero_stage", stage},
        {"world_size", world},
        {"params", model.num_parameters()},
        {"batch_per_rank", batch},
        {"seq_len", seq},
        {"steps", step_s.size()},
        {"cut_short", cut},
        {"tokens_per_s", tokens_per_s},
        {"step_ms_per_rank", per_rank},
        {"step_ms_median", median * 1e3},
        {"flops_per_token", model.flops_per_token(seq)},
        {"achieved_tflops_per_rank", flops_per_rank / 1e12},
        {"peak_tflops", peak / 1e12},
        {"mfu", mfu},
        {"loss", loss},
        {"memory_budget_bytes", memory},
        {"peak_memory_bytes", peak_bytes},
        {"pytorch", pytorch_beside(ctx, preset, config, batch, seq, median_of(step_s) * 1e3, peak_bytes)}};
    ctx.report.add_row("train", row);
    ctx.metrics.write(with_fields(row, {{"suite", "train"}}));
    const std::string what = preset + " stage " + std::to_string(stage);
    ctx.report.add_check({"train", "tokens/s " + what, tokens_per_s, "tokens/s", 0, "", 0, 0, step_s.empty(),
                          cut ? "cut short by the time bound after " + std::to_string(step_s.size()) + " steps" : ""});
    const bool gpu = ctx.device.is_cuda();
    // "tiny" (width 128) is all overhead and small matmuls: a healthy machine
    // gives it a few per cent of peak, so its thresholds are ten times lower.
    const double scale = preset == "tiny" ? 0.1 : 1.0;
    ctx.report.add_check({"train", "MFU " + what, flops_per_rank / 1e12, "TFLOP/s per rank", peak / 1e12, peak_kind,
                          (gpu ? 0.3 : 0.1) * scale, (gpu ? 0.1 : 0.01) * scale, step_s.empty(), ""});
    ctx.report.add_check(
        {"train", "step time, median over slowest rank", median, "s", slowest, "slowest rank", 0.9, 0.5, false, ""});
  }

  TrainOptions o_;
};

DTRAIN_REGISTER_BENCH_SUITE(TrainSuite);

}  // namespace
}  // namespace dtrain::bench
