// bench_cpu_ops: how fast dtrain's CPU ops are, against baselines measured in
// the same run (this machine is shared and noisy, so only ratios travel):
//  - GEMM (ops::matmul, f32) in GFLOP/s, vs OpenBLAS cblas_sgemm on the same
//    shape and vs an FMA-bound peak loop, on one thread and on all threads.
//    dtrain's CPU GEMM *calls* OpenBLAS (Eigen with EIGEN_USE_BLAS, one
//    single-threaded sgemm per OpenMP block: src/ops/cpu/gemm.cpp), so the
//    one-thread ratio only measures dispatch overhead; the figure that says
//    something is the all-thread one (dtrain's OpenMP split vs OpenBLAS's own
//    thread pool) and the fraction of the FMA peak;
//  - memory-bound ops in GB/s (bytes read + bytes written, napkin math next to
//    each op), vs memcpy of a same-sized buffer on the same thread count.
// Every figure is the best of repeated runs (min time), after a warm-up, with
// the op and its baseline called alternately.
#include <cblas.h>
#include <omp.h>

#include <CLI/CLI.hpp>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "dtrain/ops.h"
#include "dtrain/tensor.h"
#include "peak.h"

using dtrain::DType;
using dtrain::Tensor;
namespace ops = dtrain::ops;
using nlohmann::json;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Best seconds per call of fn over repeated runs lasting at least min_seconds.
double best_time(const std::function<void()>& fn, double min_seconds) {
  fn();  // warm-up: page faults, thread pools, caches
  double best = INFINITY;
  const double start = now_s();
  int reps = 0;
  do {
    const double t0 = now_s();
    fn();
    best = std::min(best, now_s() - t0);
    ++reps;
  } while (now_s() - start < min_seconds || reps < 3);
  return best;
}

// Best seconds per call of a and of b, calls alternating (a, b, a, b, ...) so
// that a shared machine's changing load hits both alike.
std::pair<double, double> best_times(const std::function<void()>& a, const std::function<void()>& b,
                                     double min_seconds) {
  a();
  b();
  double best_a = INFINITY, best_b = INFINITY;
  const double start = now_s();
  int reps = 0;
  do {
    double t0 = now_s();
    a();
    best_a = std::min(best_a, now_s() - t0);
    t0 = now_s();
    b();
    best_b = std::min(best_b, now_s() - t0);
    ++reps;
  } while (now_s() - start < min_seconds || reps < 5);
  return {best_a, best_b};
}

Tensor random(const dtrain::Shape& shape, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  Tensor t = Tensor::empty(shape);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = dist(rng);
  return t;
}

void set_threads(int n) {
  omp_set_num_threads(n);
}

struct Output {
  std::ofstream metrics;
  void write(const json& j) {
    if (metrics.is_open()) metrics << j.dump() << "\n";
  }
};

void bench_gemm(const std::vector<std::array<int64_t, 3>>& shapes, const std::vector<int>& thread_counts, double min_s,
                Output& out, json& summary) {
  std::printf(
      "\nGEMM f32 (out = a @ b), GFLOP/s; ratios against OpenBLAS cblas_sgemm and an FMA peak loop, same run\n"
      "dtrain's CPU GEMM calls OpenBLAS (sgemm via Eigen EIGEN_USE_BLAS, one single-threaded call per OpenMP "
      "block):\nthe 1-thread 'vs blas' column is OpenBLAS against itself (dispatch overhead only); the all-thread "
      "rows compare\ndtrain's threading with OpenBLAS's own, and 'vs peak' is the fraction of the FMA loop\n");
  std::printf("%-20s %7s %10s %10s %9s %10s %9s\n", "M x N x K", "threads", "dtrain", "openblas", "vs blas", "fma peak",
              "vs peak");
  for (int threads : thread_counts) {
    set_threads(threads);
    const dtrain::bench::Peak peak = dtrain::bench::fma_peak(threads, min_s);
    for (const auto& s : shapes) {
      const int64_t m = s[0], n = s[1], k = s[2];
      Tensor a = random({m, k}, 1), b = random({k, n}, 2), c = Tensor::zeros({m, n}), c2 = Tensor::zeros({m, n});
      const double flops = 2.0 * m * n * k;
      // ops::matmul runs OpenBLAS single-threaded inside its own OpenMP blocks;
      // the baseline runs OpenBLAS with its own thread pool. OpenBLAS's workers
      // keep spinning for a while after a call and would steal the cores of
      // whatever runs next, so the two are not alternated call by call:
      // two rounds of (ours, then OpenBLAS, then a pause), best of each.
      double t_ours = INFINITY, t_blas = INFINITY;
      for (int round = 0; round < 2; ++round) {
        t_ours = std::min(t_ours, best_time([&] { ops::matmul(c, a, b); }, min_s / 2));
        openblas_set_num_threads(threads);
        t_blas = std::min(t_blas, best_time(
                                      [&] {
                                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(m),
                                                    static_cast<int>(n), static_cast<int>(k), 1.0f, a.data<float>(),
                                                    static_cast<int>(k), b.data<float>(), static_cast<int>(n), 0.0f,
                                                    c2.data<float>(), static_cast<int>(n));
                                      },
                                      min_s / 2));
        openblas_set_num_threads(1);
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
      }
      const double ours = flops / t_ours / 1e9, blas = flops / t_blas / 1e9;
      char label[64];
      std::snprintf(label, sizeof(label), "%lld x %lld x %lld", static_cast<long long>(m), static_cast<long long>(n),
                    static_cast<long long>(k));
      std::printf("%-20s %7d %10.1f %10.1f %8.1f%% %10.1f %8.1f%%\n", label, threads, ours, blas, 100 * ours / blas,
                  peak.gflops, 100 * ours / peak.gflops);
      json j{{"kind", "gemm"},
             {"m", m},
             {"n", n},
             {"k", k},
             {"threads", threads},
             {"gflops", ours},
             {"openblas_gflops", blas},
             {"library", "OpenBLAS sgemm (called by dtrain)"},
             {"ratio_openblas", ours / blas},
             {"fma_peak_gflops", peak.gflops},
             {"fma_peak_isa", peak.isa},
             {"ratio_fma_peak", ours / peak.gflops}};
      out.write(j);
      if (m == 1024 && n == 1024 && k == 1024)
        summary["gemm_1024_ratio_openblas_threads_" + std::to_string(threads)] = ours / blas;
    }
  }
}

struct MemOp {
  std::string name;
  double bytes;  // read + written per call
  std::function<void()> run;
};

void bench_memory(int64_t n, const std::vector<int>& thread_counts, double min_s, Output& out, json& summary) {
  // Shapes: rows of C = 768 channels (GPT-2 small) for layernorm; vocabulary 50257 for cross-entropy.
  const int64_t ch = 768, rows = n / ch, vocab = 50257, ce_rows = std::max<int64_t>(1, n / vocab);
  Tensor x = random({rows, ch}, 1), w = random({ch}, 2), b = random({ch}, 3), dout = random({rows, ch}, 4);
  Tensor y = Tensor::empty({rows, ch}), mean = Tensor::empty({rows}), rstd = Tensor::empty({rows});
  Tensor dx = Tensor::zeros({rows, ch}), dw = Tensor::zeros({ch}), db = Tensor::zeros({ch});
  const int64_t m = rows * ch;
  Tensor flat = x.reshape({m}), flat_out = y.reshape({m}), flat_d = dout.reshape({m}), flat_dx = dx.reshape({m});
  Tensor logits = random({ce_rows, vocab}, 5, -4.0f, 4.0f), dlogits = Tensor::empty({ce_rows, vocab});
  Tensor losses = Tensor::empty({ce_rows}), targets = Tensor::zeros({ce_rows}, DType::i32);
  Tensor half = Tensor::empty({m}, DType::bf16), f16 = Tensor::empty({m}, DType::f16);
  ops::cast(half, flat);
  ops::cast(f16, flat);
  ops::AdamWTensor st{
      random({m}, 6), random({m}, 7), Tensor::zeros({m}), Tensor::zeros({m}), Tensor::empty({m}, DType::bf16), 0.1f};
  std::vector<ops::AdamWTensor> adam{st};
  ops::AdamWConfig cfg;
  Tensor norm_out = Tensor::empty({1});
  const double fm = static_cast<double>(m) * 4;  // bytes of one f32 activation
  Tensor none;
  std::vector<MemOp> list = {
      // x read, out written, mean/rstd written
      {"layernorm", 2 * fm + 8.0 * rows, [&] { ops::layernorm(y, mean, rstd, x, w, b, 1e-5f); }},
      // x, dout read; dx read + written (accumulated); mean/rstd read
      {"layernorm_backward", 4 * fm + 8.0 * rows, [&] { ops::layernorm_backward(dx, dw, db, dout, x, w, mean, rstd); }},
      {"gelu", 2 * fm, [&] { ops::gelu(flat_out, flat); }},
      // x, dout read; dx read + written
      {"gelu_backward", 4 * fm, [&] { ops::gelu_backward(flat_dx, flat_d, flat); }},
      // param, grad, m, v read; param, m, v written; bf16 copy written
      {"adamw_step", 7 * fm + fm / 2, [&] { ops::adamw_step(adam, cfg); }},
      // logits read, dlogits written (losses, targets negligible)
      {"softmax_cross_entropy", 8.0 * ce_rows * vocab,
       [&] { ops::softmax_cross_entropy(losses, dlogits, logits, targets); }},
      {"cast f32->bf16", fm + fm / 2, [&] { ops::cast(half, flat); }},
      {"cast bf16->f32", fm + fm / 2, [&] { ops::cast(flat_out, half); }},
      {"cast f32->f16", fm + fm / 2, [&] { ops::cast(f16, flat); }},
      {"cast f16->f32", fm + fm / 2, [&] { ops::cast(flat_out, f16); }},
      {"add", 3 * fm, [&] { ops::add(flat_out, flat, flat_d); }},
      {"global_norm_squared", fm, [&] { ops::global_norm_squared(norm_out, {flat}); }},
  };
  std::printf(
      "\nMemory-bound ops on %lld f32 elements (%.0f MiB per tensor), GB/s = (bytes read + written) / time;\n"
      "ratio against memcpy of the same byte count on the same threads, same run\n",
      static_cast<long long>(m), fm / (1 << 20));
  std::printf("%-24s %7s %10s %10s %9s\n", "op", "threads", "GB/s", "memcpy", "vs memcpy");
  double worst = INFINITY;
  for (int threads : thread_counts) {
    set_threads(threads);
    for (const MemOp& op : list) {
      dtrain::bench::Memcpy copier(static_cast<size_t>(op.bytes / 2));
      const auto [t, t_copy] = best_times(
          op.run, [&] { copier.run(threads); }, min_s);
      const double gbps = op.bytes / t / 1e9, copy = op.bytes / t_copy / 1e9;
      std::printf("%-24s %7d %10.2f %10.2f %8.1f%%\n", op.name.c_str(), threads, gbps, copy, 100 * gbps / copy);
      out.write({{"kind", "memory"},
                 {"op", op.name},
                 {"threads", threads},
                 {"bytes", op.bytes},
                 {"gbps", gbps},
                 {"memcpy_gbps", copy},
                 {"ratio_memcpy", gbps / copy}});
      worst = std::min(worst, gbps / copy);
    }
  }
  summary["memory_worst_ratio_memcpy"] = worst;
}

}  // namespace

// Only option setup runs outside the try below; what it can throw (bad_alloc) may end the program.
int main(int argc, char** argv) {  // NOLINT(bugprone-exception-escape)
  CLI::App app{"CPU op benchmark: GEMM vs OpenBLAS and FMA peak, memory-bound ops vs memcpy"};
  bool quick = false;
  std::string metrics_out;
  int max_threads = omp_get_max_threads();
  app.add_flag("--quick", quick, "smaller sizes and shorter runs (a few seconds)");
  app.add_option("--metrics-out", metrics_out, "write one JSON object per measurement (JSON Lines) to this file");
  std::string section = "all";
  app.add_option("--section", section, "what to run: all, gemm or memory")
      ->check(CLI::IsMember({"all", "gemm", "memory"}));
  app.add_option("--threads", max_threads, "the 'all threads' count (default: OpenMP's maximum)")
      ->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);

  try {
    Output out;
    if (!metrics_out.empty()) {
      out.metrics.open(metrics_out);
      if (!out.metrics) throw dtrain::Error("cannot open --metrics-out file " + metrics_out + " for writing");
    }
    std::vector<int> thread_counts{1};
    if (max_threads > 1) thread_counts.push_back(max_threads);
    const double min_s = quick ? 0.1 : 0.5;
    std::vector<std::array<int64_t, 3>> shapes{{256, 256, 256}, {1024, 1024, 1024}};
    if (!quick)
      shapes = {{128, 128, 128},   {256, 256, 256},   {512, 512, 512}, {1024, 1024, 1024},
                {1024, 2304, 768}, {1024, 768, 3072}, {777, 333, 129}};
    std::printf("bench_cpu_ops: %d thread(s) max, %s\n", max_threads, openblas_get_config());
    json summary{{"final", true}, {"threads", max_threads}, {"quick", quick}};
    if (section != "memory") bench_gemm(shapes, thread_counts, min_s, out, summary);
    if (section != "gemm") bench_memory(quick ? (8 << 20) : (16 << 20), thread_counts, min_s, out, summary);
    out.write(summary);
    std::printf("\n%s\n", summary.dump().c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_cpu_ops: %s\n", e.what());
    return 1;
  }
}
