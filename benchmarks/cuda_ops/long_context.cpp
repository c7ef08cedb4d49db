// bench_long_context: trains a GPT at a long context (default gpt2-124m at
// T = 8192, bf16) with each CUDA attention path and records each one's peak
// memory (issue 11). The batched-GEMM path ("matmul") holds [B*NH, T, T]
// scores per attention call (f32 S plus bf16 P: 6 bytes per score, about
// B * 4.6 GiB at T = 8192 with 12 heads), the flash paths ("flash", "tc") a
// few values per row. The default batch is the largest whose step fills 80%
// of the device on a flash path (measured at batches 1 and 2 first: memory
// is linear in the batch there), so the flash paths fit and the batched path, needing
// its scores on top, does not. An allocation that fails is reported as
// "out of memory at X GiB" (the bytes live when it failed), not a crash, and
// the next path still runs.
//
//   bench_long_context                                   # 124M, T=8192, auto batch, flash,tc,matmul
//   bench_long_context --batch 8 --cap-gib 80            # as on an 80 GiB card
//   bench_long_context --impl tc --seq-len 16384 --batch 4
//
// Each path: a fresh model and engine (world size 1, bf16 with f32 master
// weights: the train_gpt path), --steps optimizer steps on random tokens,
// the allocator's peak over them and the step time of the last. Prints one
// line per path; --metrics-out writes one JSON object per path and a summary.
// Exits 0 when every path either trained or ran out of memory, 1 on any
// other error; on a machine without a GPU it says so and exits 0.
#include <cuda_runtime_api.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "dtrain/allocator.h"
#include "dtrain/comm/communicator.h"
#include "dtrain/device.h"
#include "dtrain/error.h"
#include "dtrain/nn/gpt.h"
#include "dtrain/optim/adamw.h"
#include "dtrain/parallel/data_parallel.h"
#include "dtrain/stream.h"

using namespace dtrain;
using json = nlohmann::json;

namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

struct Options {
  std::string preset = "gpt2-124m";
  int64_t seq_len = 8192;
  int64_t batch = 0;  // 0: the largest that fills 80% of the memory on a flash path (below)
  int steps = 2;
  std::vector<std::string> impls{"flash", "tc", "matmul"};
  double cap_gib = 0.0;  // > 0: leave only this much device memory to the runs
  int device = 0;
  std::string metrics_out;
};

// What one path did: trained (peak, step time) or ran out of memory (live bytes then).
struct PathResult {
  std::string impl;
  bool out_of_memory = false;
  int64_t peak_bytes = 0;
  double step_ms = 0.0;
  float loss = 0.0f;
  std::string error;
};

// An allocation failure, from dtrain's allocator or from a library allocating
// its own workspace (cuBLAS), as opposed to any other error.
bool is_out_of_memory(const std::string& what) {
  for (const char* sign : {"out of device memory", "out of memory", "ALLOC_FAILED"}) {
    if (what.find(sign) != std::string::npos) return true;
  }
  return false;
}

Tensor random_tokens(int64_t batch, int64_t seq, int64_t vocab, uint64_t seed) {
  Tensor t = Tensor::empty({batch, seq}, DType::i32);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> dist(0, static_cast<int32_t>(vocab - 1));
  for (int64_t i = 0; i < t.numel(); ++i) t.data<int32_t>()[i] = dist(rng);
  return t;
}

// Trains `steps` steps of `batch` sequences with DTRAIN_ATTENTION=impl; the
// peak is the allocator's over model construction and every step.
PathResult train_path(const Options& opt, const std::string& impl, int64_t batch, int steps, const Device& gpu) {
  PathResult r;
  r.impl = impl;
  ::setenv("DTRAIN_ATTENTION", impl.c_str(), 1);
  empty_cache(gpu);
  reset_peak_memory(gpu);
  try {
    nn::GPTConfig config = nn::GPTConfig::preset(opt.preset);
    config.max_seq_len = opt.seq_len;
    config.param_dtype = DType::bf16;
    config.compute_dtype = DType::bf16;
    nn::GPT model(config, gpu, 1);
    parallel::DataParallelOptions dp_options;
    dp_options.precision = parallel::Precision::bf16;
    parallel::DataParallel engine(model, comm::Communicator::single_process(), dp_options);
    optim::AdamW optimizer(engine.param_groups(0.1f));
    const Tensor tokens = random_tokens(batch, opt.seq_len, config.vocab_size, 5);
    const Tensor targets = random_tokens(batch, opt.seq_len, config.vocab_size, 6);
    for (int step = 0; step < steps; ++step) {
      const auto t0 = std::chrono::steady_clock::now();
      r.loss = model.forward(tokens, targets, engine.grad_scale());
      model.backward();
      engine.step(optimizer, 1e-4f, 1.0f);
      current_stream(gpu).synchronize();
      r.step_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    }
    r.peak_bytes = memory_stats(gpu).peak_bytes;
  } catch (const std::exception& e) {
    r.error = e.what();
    r.out_of_memory = is_out_of_memory(r.error);
    r.peak_bytes = memory_stats(gpu).peak_bytes;    // what was live when the allocation failed, at most
    if (r.out_of_memory) (void)cudaGetLastError();  // a failed cudaMalloc leaves no sticky error; clear the last one
  }
  ::unsetenv("DTRAIN_ATTENTION");
  empty_cache(gpu);
  return r;
}

std::string describe(const PathResult& r, const Options& opt, int64_t batch) {
  std::ostringstream os;
  os << "attention " << r.impl << " T=" << opt.seq_len << " batch " << batch << ": ";
  char buf[200];
  if (r.error.empty()) {
    std::snprintf(buf, sizeof buf, "peak %.2f GiB, step %.0f ms, loss %.4f", static_cast<double>(r.peak_bytes) / kGiB,
                  r.step_ms, r.loss);
  } else if (r.out_of_memory) {
    std::snprintf(buf, sizeof buf, "out of memory at %.2f GiB", static_cast<double>(r.peak_bytes) / kGiB);
  } else {
    std::snprintf(buf, sizeof buf, "error: %s", r.error.substr(0, 150).c_str());
  }
  os << buf;
  return os.str();
}

int run(const Options& opt) {
  if (!cuda_compiled() || cuda_device_count() <= opt.device) {
    std::printf("bench_long_context: no CUDA device %d on this machine (%d visible); nothing to measure\n", opt.device,
                cuda_device_count());
    return 0;
  }
  const Device gpu = Device::cuda(opt.device);
  DTRAIN_CHECK(cudaSetDevice(opt.device) == cudaSuccess, "cannot select CUDA device ", opt.device);
  size_t free_bytes = 0, total_bytes = 0;
  DTRAIN_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess, "cudaMemGetInfo failed");
  // --cap-gib: one block outside dtrain's allocator takes the rest, as a smaller card would.
  void* ballast = nullptr;
  if (opt.cap_gib > 0.0) {
    const auto keep = static_cast<size_t>(opt.cap_gib * kGiB);
    DTRAIN_CHECK(keep < free_bytes, "--cap-gib ", opt.cap_gib, " is more than the ",
                 static_cast<double>(free_bytes) / kGiB, " GiB free on the device; pass less");
    DTRAIN_CHECK(cudaMalloc(&ballast, free_bytes - keep) == cudaSuccess, "could not reserve ",
                 static_cast<double>(free_bytes - keep) / kGiB, " GiB for --cap-gib");
  }
  const double usable = opt.cap_gib > 0.0 ? opt.cap_gib * kGiB : static_cast<double>(free_bytes);
  int64_t batch = opt.batch;
  if (batch == 0) {
    // Memory is linear in the batch on the flash paths: one step at batch 1
    // and one at batch 2 give the fixed bytes (model and optimizer state)
    // and the bytes per sequence.
    const std::string probe_impl = opt.impls.front() == "matmul" ? "tc" : opt.impls.front();
    const PathResult one = train_path(opt, probe_impl, 1, 1, gpu);
    const PathResult two = train_path(opt, probe_impl, 2, 1, gpu);
    std::printf("probe: %s\nprobe: %s\n", describe(one, opt, 1).c_str(), describe(two, opt, 2).c_str());
    DTRAIN_CHECK(one.error.empty() && two.error.empty(), "the batch-1 and batch-2 probes failed; pass --batch");
    const double per_sequence = std::max(1.0, static_cast<double>(two.peak_bytes - one.peak_bytes));
    const double fixed = static_cast<double>(one.peak_bytes) - per_sequence;
    batch = std::max<int64_t>(1, static_cast<int64_t>((0.8 * usable - fixed) / per_sequence));
  }
  const nn::GPTConfig config = nn::GPTConfig::preset(opt.preset);
  const double scores =
      static_cast<double>(batch) * config.n_head * static_cast<double>(opt.seq_len) * static_cast<double>(opt.seq_len);
  const std::string cap = opt.cap_gib > 0 ? ", runs capped at " + std::to_string(opt.cap_gib) + " GiB" : "";
  std::printf(
      "bench_long_context: %s, T=%lld, batch %lld, bf16, %d steps; device %.1f GiB (%.1f free%s); "
      "batched-GEMM scores per attention call: %.1f GiB (f32 S + bf16 P)\n",
      opt.preset.c_str(), static_cast<long long>(opt.seq_len), static_cast<long long>(batch), opt.steps,
      static_cast<double>(total_bytes) / kGiB, static_cast<double>(free_bytes) / kGiB, cap.c_str(),
      6.0 * scores / kGiB);
  std::ofstream out;
  if (!opt.metrics_out.empty()) {
    out.open(opt.metrics_out);
    DTRAIN_CHECK(out.good(), "cannot open --metrics-out file '", opt.metrics_out, "'");
  }
  json summary = {{"final", true}, {"preset", opt.preset}, {"T", opt.seq_len}, {"batch", batch}};
  int errors = 0;
  for (const std::string& impl : opt.impls) {
    const PathResult r = train_path(opt, impl, batch, opt.steps, gpu);
    std::printf("%s\n", describe(r, opt, batch).c_str());
    std::fflush(stdout);
    const json record = {{"bench", "long_context"},
                         {"impl", r.impl},
                         {"T", opt.seq_len},
                         {"batch", batch},
                         {"out_of_memory", r.out_of_memory},
                         {"peak_bytes", r.peak_bytes},
                         {"step_ms", r.step_ms},
                         {"loss", r.loss},
                         {"error", r.error}};
    if (out.is_open()) out << record.dump() << "\n" << std::flush;
    summary[r.impl + (r.out_of_memory ? "_oom_at_bytes" : "_peak_bytes")] = r.peak_bytes;
    errors += !r.error.empty() && !r.out_of_memory ? 1 : 0;
  }
  if (out.is_open()) out << summary.dump() << "\n";
  if (ballast != nullptr) (void)cudaFree(ballast);
  return errors == 0 ? 0 : 1;
}

}  // namespace

// Only option setup runs outside the try below; what it can throw (bad_alloc) may end the program.
int main(int argc, char** argv) {  // NOLINT(bugprone-exception-escape)
  CLI::App app{"bench_long_context: peak memory of a long-context GPT step per CUDA attention path"};
  Options opt;
  app.add_option("--preset", opt.preset, "model preset: tiny, gpt2-124m, gpt2-350m")->capture_default_str();
  app.add_option("--seq-len", opt.seq_len, "tokens per sequence (the model's max_seq_len too)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--batch", opt.batch, "sequences per step (0: fill 80% of the memory on a flash path)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--steps", opt.steps, "optimizer steps per path")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--impl", opt.impls, "attention paths, in order (DTRAIN_ATTENTION values)")
      ->delimiter(',')
      ->check(CLI::IsMember({"matmul", "flash", "tc"}));
  app.add_option("--cap-gib", opt.cap_gib, "leave only this much device memory to the runs (0: all)");
  app.add_option("--device", opt.device, "CUDA device index")->check(CLI::NonNegativeNumber);
  app.add_option("--metrics-out", opt.metrics_out, "write JSON Lines results to this file");
  CLI11_PARSE(app, argc, argv);
  try {
    return run(opt);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_long_context: %s\n", e.what());
    return 1;
  }
}
