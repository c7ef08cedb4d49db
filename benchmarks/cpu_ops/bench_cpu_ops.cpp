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
// The cases (shapes, inputs, bytes, FLOPs, the library dtrain calls) come from
// the op case registry (tests/op_cases), which the tests share.
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
#include "op_case.h"
#include "peak.h"

using dtrain::DType;
using dtrain::Tensor;
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

void set_threads(int n) {
  omp_set_num_threads(n);
}

struct Output {
  std::ofstream metrics;
  void write(const json& j) {
    if (metrics.is_open()) metrics << j.dump() << "\n";
  }
};

void bench_gemm(const std::vector<dtrain::op_cases::OpCase>& gemm_cases, const std::vector<int>& thread_counts,
                double min_s, Output& out, json& summary) {
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
    for (const dtrain::op_cases::OpCase& gemm : gemm_cases) {
      dtrain::op_cases::Bound t = dtrain::op_cases::bind(gemm, DType::f32, dtrain::Device::cpu());
      Tensor &a = t["a"], &b = t["b"];
      const int64_t m = a.size(0), k = a.size(1), n = b.size(1);
      Tensor c2 = Tensor::zeros({m, n});
      const double flops = gemm.forward_flops;
      // ops::matmul runs OpenBLAS single-threaded inside its own OpenMP blocks;
      // the baseline runs OpenBLAS with its own thread pool. OpenBLAS's workers
      // keep spinning for a while after a call and would steal the cores of
      // whatever runs next, so the two are not alternated call by call:
      // two rounds of (ours, then OpenBLAS, then a pause), best of each.
      double t_ours = INFINITY, t_blas = INFINITY;
      for (int round = 0; round < 2; ++round) {
        t_ours = std::min(t_ours, best_time([&] { gemm.forward(t); }, min_s / 2));
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
      std::printf("%-20s %7d %10.1f %10.1f %8.1f%% %10.1f %8.1f%%  (dtrain calls %s)\n", label, threads, ours, blas,
                  100 * ours / blas, peak.gflops, 100 * ours / peak.gflops, gemm.cpu_library.c_str());
      json j{{"kind", "gemm"},
             {"m", m},
             {"n", n},
             {"k", k},
             {"threads", threads},
             {"gflops", ours},
             {"openblas_gflops", blas},
             {"library", gemm.cpu_library + " (called by dtrain)"},
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

// The registry's memory-bound cases (f32), forward and backward.
std::vector<MemOp> memory_ops(const std::vector<dtrain::op_cases::OpCase>& cases,
                              std::vector<dtrain::op_cases::Bound>& bound) {
  bound.reserve(cases.size());  // the closures below hold references into it
  std::vector<MemOp> list;
  for (const dtrain::op_cases::OpCase& c : cases) {
    if (c.forward_flops > 0 || !c.forward_bytes) continue;  // GEMM-shaped: the GEMM section
    dtrain::op_cases::Bound& t = bound.emplace_back(dtrain::op_cases::bind(c, DType::f32, dtrain::Device::cpu()));
    const std::string name = c.op == "cast" ? "cast " + c.label.substr(0, c.label.find(" n=")) : c.op;
    list.push_back({name, c.forward_bytes(DType::f32), [&c, &t] { c.forward(t); }});
    if (c.backward && c.backward_bytes)
      list.push_back({name + "_backward", c.backward_bytes(DType::f32), [&c, &t] { c.backward(t); }});
  }
  return list;
}

void bench_memory(const std::vector<dtrain::op_cases::OpCase>& cases, int64_t m, const std::vector<int>& thread_counts,
                  double min_s, Output& out, json& summary) {
  std::vector<dtrain::op_cases::Bound> bound;
  const std::vector<MemOp> list = memory_ops(cases, bound);
  const double fm = static_cast<double>(m) * 4;  // bytes of one f32 activation
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
    dtrain::op_cases::BenchScale scale{};
    scale.elements = quick ? (8 << 20) : (16 << 20);
    scale.channels = 768;  // GPT-2 small's rows for layernorm
    scale.vocab = 50257;   // GPT-2's vocabulary for softmax_cross_entropy
    scale.quick = quick;
    scale.cuda = false;
    scale.gemm_shapes = {{256, 256, 256}, {1024, 1024, 1024}};
    if (!quick)
      scale.gemm_shapes = {{128, 128, 128},   {256, 256, 256},   {512, 512, 512}, {1024, 1024, 1024},
                           {1024, 2304, 768}, {1024, 768, 3072}, {777, 333, 129}};
    std::vector<dtrain::op_cases::OpCase> cases = dtrain::op_cases::bench_cases(scale), gemm_cases;
    for (const auto& c : cases)
      if (c.op == "matmul") gemm_cases.push_back(c);
    std::printf("bench_cpu_ops: %d thread(s) max, %s\n", max_threads, openblas_get_config());
    json summary{{"final", true}, {"threads", max_threads}, {"quick", quick}};
    if (section != "memory") bench_gemm(gemm_cases, thread_counts, min_s, out, summary);
    if (section != "gemm") bench_memory(cases, scale.elements, thread_counts, min_s, out, summary);
    out.write(summary);
    std::printf("\n%s\n", summary.dump().c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_cpu_ops: %s\n", e.what());
    return 1;
  }
}
