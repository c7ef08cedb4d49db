// bench_ddp: the data-parallel engine's ZeRO stages side by side, on the ranks
// this process was launched with (dtrain-run / torchrun / srun / mpirun).
//
//   dtrain-run --nproc-per-node 2 build/benchmarks/ddp/bench_ddp                # tiny + mid presets, CPU
//   dtrain-run --nproc-per-node 2 build/benchmarks/ddp/bench_ddp --quick
//   bench_ddp --device cuda --precision bf16 --presets gpt2-124m                   # one GPU: stage overheads
//
// Per preset and stage: median step time (the slowest rank's), the ratio to
// stage 0 measured in the same run, start-up peak per rank (allocator peak
// from building the model to the engine and optimizer built; stage 3 builds
// the model deferred, so each rank only ever holds its shards), peak memory
// per rank (allocator peak over the first steps), model state per rank (measured, and the ZeRO formula), and
// the fraction of communication time hidden behind compute, from the engine's
// trace: the part of the collectives' time (issue to completion) that lies
// inside compute (backward for stage 0; also each module's forward after its
// parameters arrived for stages 1-2; each unit's forward/backward after its
// gather arrived for stage 3), so waiting never counts as hiding. A stage-0
// run with overlap off is the no-overlap baseline. Memory is measured with
// one configuration alive at a time; step times with all of them alive, one
// step of each in turn, so a shared machine's load changes hit all alike.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "dtrain/allocator.h"
#include "dtrain/comm/init.h"
#include "dtrain/nn/gpt.h"
#include "dtrain/optim/adamw.h"
#include "dtrain/parallel/data_parallel.h"

using namespace dtrain;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::vector<std::string> presets = {"tiny", "mid"};
  std::string device = "cpu";
  std::string precision = "f32";
  int64_t batch = 16;  // global
  int64_t seq_len = 64;
  int steps = 12;
  int warmup = 2;
  int buckets = 8;   // stages 0-2: aim for about this many buckets
  int prefetch = 1;  // stage 3: units gathered ahead
  bool quick = false;
  std::string metrics_out;
};

nn::GPTConfig preset(const std::string& name) {
  if (name == "mid") {  // ~3.3M parameters: a model whose gradients take Gloo tens of ms
    nn::GPTConfig c;
    c.n_layer = 4;
    c.n_head = 4;
    c.n_embd = 256;
    c.vocab_size = 256;
    c.max_seq_len = 256;
    return c;
  }
  return nn::GPTConfig::preset(name);
}

double mib(double b) {
  return b / (1024.0 * 1024.0);
}

std::vector<double> gather(comm::Communicator& c, double v) {
  Tensor in = Tensor::from_vector({static_cast<float>(v)}, {1});
  Tensor out = Tensor::empty({c.size()}, DType::f32);
  if (c.size() == 1) {
    out.copy_(in);
  } else {
    c.all_gather(in, out).wait();
  }
  std::vector<double> r;
  for (float f : out.to_vector()) r.push_back(f);
  return r;
}

struct Row {
  std::string preset, label;
  int stage = 0;
  double step_ms = 0, hidden = 0, comm_ms = 0;
  std::vector<double> peak, startup;
  double model_state = 0, predicted = 0;
  size_t groups = 0;
  double fwd_ms = 0, bwd_ms = 0, wait_ms = 0, opt_ms = 0;  // per step, rank 0's trace
};

// One configuration: a model, its engine and optimizer, this rank's batch.
struct Bench {
  std::unique_ptr<nn::GPT> model;
  std::unique_ptr<parallel::DataParallel> dp;
  std::unique_ptr<optim::AdamW> adamw;
  Tensor x, y;
  std::vector<double> times;

  Bench(const std::shared_ptr<comm::Communicator>& comm, const Options& opt, const std::string& preset_name, int stage,
        bool overlap) {
    const Device device = Device::parse(opt.device);
    const nn::GPTConfig cfg = preset(preset_name);
    std::optional<nn::DeferredInit> deferred;  // stage 3: no rank builds the whole model
    if (stage == 3) deferred.emplace();
    model = std::make_unique<nn::GPT>(cfg, device, 1234);
    deferred.reset();
    const int64_t param_bytes = model->num_parameters() * 4;
    parallel::DataParallelOptions o;
    o.stage = stage;
    o.overlap = overlap;
    o.precision = parallel::parse_precision(opt.precision);
    o.bucket_bytes = std::max<int64_t>(64 << 10, param_bytes / opt.buckets);
    o.first_bucket_bytes = std::min<int64_t>(1 << 20, o.bucket_bytes);
    o.prefetch_depth = opt.prefetch;
    o.trace = true;
    dp = std::make_unique<parallel::DataParallel>(*model, comm, o);
    adamw = std::make_unique<optim::AdamW>(dp->param_groups(0.1f));
    const int64_t rows = opt.batch / comm->size();
    std::mt19937 rng(static_cast<uint32_t>(7 + comm->rank()));
    std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(cfg.vocab_size - 1));
    x = Tensor::empty({rows, opt.seq_len}, DType::i32);
    y = Tensor::empty({rows, opt.seq_len}, DType::i32);
    for (int64_t i = 0; i < x.numel(); ++i) {
      x.data<int32_t>()[i] = tok(rng);
      y.data<int32_t>()[i] = tok(rng);
    }
  }

  double step() {
    const auto t0 = Clock::now();
    model->forward(x, y, dp->grad_scale());
    model->backward();
    dp->step(*adamw, 1e-4f, 1.0f);  // reads the gradient norm on the host: device work is done
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  }
};

struct Cfg {
  int stage;
  bool overlap;
  std::string label() const { return std::to_string(stage) + (overlap ? "" : " (no overlap)"); }
};
const Cfg kConfigs[] = {{0, true}, {0, false}, {1, true}, {2, true}, {3, true}};

// Phase 1, one configuration alive at a time: peak memory over a few steps
// and the model-state ledger.
void measure_memory(comm::Communicator& c, const std::shared_ptr<comm::Communicator>& comm, const Options& opt,
                    const std::string& preset_name, const Cfg& cfg, Row& r) {
  const Device device = Device::parse(opt.device);
  const int64_t before = memory_stats(device).current_bytes;
  reset_peak_memory(device);
  Bench b(comm, opt, preset_name, cfg.stage, cfg.overlap);
  r.startup = gather(c, static_cast<double>(memory_stats(device).peak_bytes - before));
  reset_peak_memory(device);
  for (int s = 0; s < std::max(2, opt.warmup); ++s) b.step();
  r.peak = gather(c, static_cast<double>(memory_stats(device).peak_bytes));
  const auto m = b.dp->ledger(b.adamw.get());
  r.model_state = static_cast<double>(m.model_state());
  r.predicted = static_cast<double>(b.dp->predicted().model_state());
  r.groups = b.dp->groups().size();
}

// Phase 2, all configurations alive, one step of each in turn per round, so
// load changes on a shared machine hit every configuration alike.
void measure_time(comm::Communicator& c, const std::shared_ptr<comm::Communicator>& comm, const Options& opt,
                  const std::string& preset_name, std::vector<Row>& rows) {
  std::vector<std::unique_ptr<Bench>> benches;
  for (const Cfg& cfg : kConfigs)
    benches.push_back(std::make_unique<Bench>(comm, opt, preset_name, cfg.stage, cfg.overlap));
  for (int w = 0; w < opt.warmup; ++w) {
    for (auto& b : benches) b->step();
  }
  for (auto& b : benches) b->dp->trace()->clear();
  for (int s = 0; s < opt.steps; ++s) {
    for (auto& b : benches) b->times.push_back(b->step());
  }
  for (size_t i = 0; i < benches.size(); ++i) {
    Bench& b = *benches[i];
    Row& r = rows[i];
    const int stage = kConfigs[i].stage;
    std::sort(b.times.begin(), b.times.end());
    const auto all_ms = gather(c, b.times[b.times.size() / 2]);
    r.step_ms = *std::max_element(all_ms.begin(), all_ms.end());
    const auto events = b.dp->trace()->events();
    for (const auto& e : events) {
      const double ms = (e.end_us - e.start_us) / 1000.0 / static_cast<double>(opt.steps);
      if (e.kind == "forward") r.fwd_ms += ms;
      if (e.kind == "backward") r.bwd_ms += ms;
      if (e.kind == "backward_wait") r.wait_ms += ms;
      if (e.kind == "step") r.opt_ms += ms;
    }
    // Stages 1-3 communicate during forward too (1-2: the parameter all-gather
    // issued by the previous update); stage 0 only in backward.
    std::vector<parallel::TraceEvent> ev;
    for (const auto& e : events) {
      if (e.kind == "reduce" || e.kind == "gather") ev.push_back({"comm", e.name, e.start_us, e.end_us});
      // Compute only, never waiting: stage 0 backward; stages 1-2 backward
      // and each module's forward after its parameters arrived; stage 3 each
      // unit's forward/backward after its gather arrived.
      const bool cover = (stage <= 2 && e.kind == "backward") || (stage >= 1 && e.kind == "compute");
      if (cover) ev.push_back({"cover", e.name, e.start_us, e.end_us});
    }
    const auto ov = parallel::overlap(ev, "comm", "cover");
    const auto hidden = gather(c, ov.fraction());
    const auto comm_ms = gather(c, ov.total_us / 1000.0 / static_cast<double>(opt.steps));
    for (double h : hidden) r.hidden += h / static_cast<double>(hidden.size());
    for (double v : comm_ms) r.comm_ms += v / static_cast<double>(comm_ms.size());
  }
}

}  // namespace

namespace {
int run(int argc, char** argv) {
  CLI::App app{"bench_ddp: step time, memory and hidden communication of ZeRO stages 0-3"};
  Options opt;
  std::string presets = "tiny,mid";
  app.add_option("--presets", presets, "comma-separated: tiny, mid, gpt2-124m, gpt2-350m")->capture_default_str();
  app.add_option("--device", opt.device, "cpu or cuda[:N]")->capture_default_str();
  app.add_option("--precision", opt.precision, "f32, bf16, f16 (mixed: GPU only)")->capture_default_str();
  app.add_option("--batch", opt.batch, "global batch (sequences)")->capture_default_str();
  app.add_option("--seq-len", opt.seq_len, "tokens per sequence")->capture_default_str();
  app.add_option("--steps", opt.steps, "timed steps per configuration")->capture_default_str();
  app.add_option("--warmup", opt.warmup, "untimed steps first")->capture_default_str();
  app.add_option("--buckets", opt.buckets, "stages 0-2: gradient buckets to aim for")->capture_default_str();
  app.add_option("--prefetch", opt.prefetch, "stage 3: units gathered ahead of use")->capture_default_str();
  app.add_flag("--quick", opt.quick, "fewer steps");
  app.add_option("--metrics-out", opt.metrics_out, "JSON Lines: one object per configuration");
  CLI11_PARSE(app, argc, argv);
  try {
    opt.presets.clear();
    for (size_t s = 0; s <= presets.size();) {
      const size_t e = std::min(presets.find(',', s), presets.size());
      if (e > s) opt.presets.push_back(presets.substr(s, e - s));
      s = e + 1;
    }
    if (opt.quick) {
      opt.steps = 4;
      opt.warmup = 1;
    }
    std::shared_ptr<comm::Communicator> comm;
    std::string local_dir;
    if (std::getenv("WORLD_SIZE") || std::getenv("SLURM_NTASKS") || std::getenv("OMPI_COMM_WORLD_SIZE")) {
      comm = comm::init_process_group();
    } else {
      char tmpl[] = "/tmp/dtrain_bench_ddp_XXXXXX";
      DTRAIN_CHECK(::mkdtemp(tmpl) != nullptr, "cannot create a temporary directory");
      local_dir = tmpl;
      comm = std::make_shared<comm::Communicator>(std::make_shared<comm::FileStore>(local_dir), 0, 1);
      std::printf(
          "note: no launcher environment, running on 1 rank; use dtrain-run --nproc-per-node 2 for the "
          "world-size-2 figures\n");
    }
    const bool lead = comm->rank() == 0;
    DTRAIN_CHECK(opt.batch % comm->size() == 0, "--batch ", opt.batch, " must be divisible by the world size ",
                 comm->size());
    std::FILE* jsonl = lead && !opt.metrics_out.empty() ? std::fopen(opt.metrics_out.c_str(), "w") : nullptr;
    if (lead) {
      std::printf("bench_ddp: %d rank(s), device %s, precision %s, global batch %lld x %lld, %d timed steps\n",
                  comm->size(), opt.device.c_str(), opt.precision.c_str(), static_cast<long long>(opt.batch),
                  static_cast<long long>(opt.seq_len), opt.steps);
      std::printf("%-8s %-16s %7s %10s %9s %22s %22s %12s %12s %10s %8s   %s\n", "preset", "stage", "groups", "step ms",
                  "vs st.0", "start-up MiB per rank", "peak MiB per rank", "state MiB", "formula MiB", "comm ms",
                  "hidden", "rank 0: forward / backward / wait / update ms");
    }
    for (const auto& p : opt.presets) {
      std::vector<Row> rows(std::size(kConfigs));
      for (size_t i = 0; i < rows.size(); ++i) {
        rows[i].preset = p;
        rows[i].stage = kConfigs[i].stage;
        rows[i].label = kConfigs[i].label();
        measure_memory(*comm, comm, opt, p, kConfigs[i], rows[i]);
      }
      measure_time(*comm, comm, opt, p, rows);
      const double stage0_ms = rows[0].step_ms;
      for (size_t i = 0; i < rows.size() && lead; ++i) {
        const Row& r = rows[i];
        auto per_rank = [](const std::vector<double>& bytes) {
          std::string text;
          for (double b : bytes) {
            char buf[32];
            std::snprintf(buf, sizeof(buf), "%s%.1f", text.empty() ? "" : " / ", mib(b));
            text += buf;
          }
          return text;
        };
        std::printf("%-8s %-16s %7zu %10.1f %9.2f %22s %22s %12.2f %12.2f %10.1f %7.0f%%   %.1f / %.1f / %.1f / %.1f\n",
                    p.c_str(), r.label.c_str(), r.groups, r.step_ms, r.step_ms / stage0_ms, per_rank(r.startup).c_str(),
                    per_rank(r.peak).c_str(), mib(r.model_state), mib(r.predicted), r.comm_ms, 100.0 * r.hidden,
                    r.fwd_ms, r.bwd_ms, r.wait_ms, r.opt_ms);
        std::fflush(stdout);
        if (jsonl) {
          nlohmann::json j = {{"preset", p},
                              {"stage", r.stage},
                              {"overlap", kConfigs[i].overlap},
                              {"world_size", comm->size()},
                              {"step_ms", r.step_ms},
                              {"ratio_to_stage0", r.step_ms / stage0_ms},
                              {"startup_peak_bytes_per_rank", r.startup},
                              {"peak_bytes_per_rank", r.peak},
                              {"model_state_bytes", r.model_state},
                              {"model_state_bytes_predicted", r.predicted},
                              {"comm_ms_per_step", r.comm_ms},
                              {"comm_hidden_fraction", r.hidden},
                              {"forward_ms", r.fwd_ms},
                              {"backward_ms", r.bwd_ms},
                              {"backward_wait_ms", r.wait_ms},
                              {"update_ms", r.opt_ms}};
          std::fprintf(jsonl, "%s\n", j.dump().c_str());
          std::fflush(jsonl);
        }
      }
    }
    if (jsonl) std::fclose(jsonl);
    comm.reset();
    if (comm::is_initialized()) comm::destroy_process_group();
    if (!local_dir.empty()) std::filesystem::remove_all(local_dir);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_ddp: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (...) {
    std::fprintf(stderr, "bench_ddp: unexpected error\n");
    return 1;
  }
}
