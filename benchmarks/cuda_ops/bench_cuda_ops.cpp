// bench_cuda_ops: how close the CUDA op set comes to the hardware.
//
//   GEMM       TFLOP/s of ops::matmul (cuBLASLt, cached plan) next to plain
//              cublasGemmEx on the same shape, same run: ratio = ours / cuBLAS.
//   memory     GB/s of the memory-bound ops next to a device-to-device copy
//              (cudaMemcpyAsync) in the same run. Bytes are the minimum each
//              op must move (every input read once, every output written
//              once; accumulated outputs read and written), so extra passes
//              show up as a lower figure. Copy: 2 x size (read + write).
//   fused MLP  ms of the MLP's GELU GEMMs (ops::linear_gelu, ops::matmul_dgelu_bgrad:
//              cuBLASLt epilogues) next to the unfused ops they replace (the GEMM,
//              then the GELU or GELU-gradient pass and the bias-gradient sum).
//   attention  TFLOP/s forward, backward and forward+backward with the causal
//              FLOP count (half of the T x T products: 2 GEMMs forward, 5
//              backward, 2*T*T*hs each, halved), B=8, 12 heads of 64, bf16,
//              T = 1024 and 2048, for each implementation
//              (DTRAIN_ATTENTION=matmul|flash|tc), next to PyTorch's
//              scaled_dot_product_attention run in the same call when python3
//              imports torch with CUDA (dev/attention_sdpa.py; else one line
//              says why it was not measured).
//
// The cases (shapes, inputs, bytes, FLOPs, the library dtrain calls) come
// from the op case registry (tests/op_cases), which the tests share.
//
// Output: a human line per measurement, and with --metrics-out one JSON object
// per measurement plus a final summary ({"final": true}).
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "attention_tc.h"
#include "cuda_timing.h"
#include "dtrain/allocator.h"
#include "dtrain/device.h"
#include "dtrain/error.h"
#include "dtrain/ops.h"
#include "dtrain/stream.h"
#include "op_case.h"
#include "sdpa_baseline.h"

using namespace dtrain;
using json = nlohmann::json;

namespace {

struct Options {
  bool quick = false;
  std::string metrics_out;
  int device = 0;
  bool sdpa = true;                              // PyTorch SDPA next to the attention rows
  std::string python = "python3";                // interpreter for the SDPA baseline
  std::string sdpa_script = DTRAIN_SDPA_SCRIPT;  // the source tree's attention_sdpa.py
};

#define BENCH_CUDA(stmt)                                                             \
  do {                                                                               \
    const cudaError_t e_ = (stmt);                                                   \
    if (e_ != cudaSuccess) DTRAIN_THROW(#stmt, " failed: ", cudaGetErrorString(e_)); \
  } while (0)
#define BENCH_CUBLAS(stmt)                                                                        \
  do {                                                                                            \
    const cublasStatus_t s_ = (stmt);                                                             \
    if (s_ != CUBLAS_STATUS_SUCCESS) DTRAIN_THROW(#stmt, " failed: ", cublasGetStatusString(s_)); \
  } while (0)

class Bench {
 public:
  explicit Bench(const Options& o) : opt_(o), gpu_(Device::cuda(o.device)) {
    if (!o.metrics_out.empty()) {
      out_.open(o.metrics_out);
      DTRAIN_CHECK(out_.good(), "cannot open --metrics-out file '", o.metrics_out, "'");
    }
  }

  // Milliseconds per call of fn on the current stream (after warm-up).
  double time_ms(const std::function<void()>& fn) {
    return bench::time_cuda_ms(gpu_, opt_.quick ? 2 : 5, opt_.quick ? 5 : 20, fn);
  }

  void emit(json record, const std::string& human) {
    std::printf("%s\n", human.c_str());
    std::fflush(stdout);
    if (out_.is_open()) out_ << record.dump() << "\n" << std::flush;
    records_.push_back(std::move(record));
  }

  const Options& opt() const { return opt_; }
  const Device& gpu() const { return gpu_; }
  std::vector<json>& records() { return records_; }
  std::ofstream& out() { return out_; }

 private:
  Options opt_;
  Device gpu_;
  std::ofstream out_;
  std::vector<json> records_;
};

double copy_gbps(Bench& b) {
  const size_t bytes = (b.opt().quick ? size_t{256} : size_t{1024}) << 20;
  Tensor src = Tensor::zeros({static_cast<int64_t>(bytes)}, DType::u8, b.gpu());
  Tensor dst = Tensor::empty({static_cast<int64_t>(bytes)}, DType::u8, b.gpu());
  const auto stream = static_cast<cudaStream_t>(current_stream(b.gpu()).native_handle());
  const double ms = b.time_ms(
      [&] { BENCH_CUDA(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), bytes, cudaMemcpyDeviceToDevice, stream)); });
  const double gbps = 2.0 * static_cast<double>(bytes) / (ms * 1e6);
  b.emit({{"bench", "copy"}, {"bytes", bytes}, {"ms", ms}, {"gbps", gbps}},
         "copy      d2d " + std::to_string(bytes >> 20) + " MiB: " + std::to_string(gbps) + " GB/s (baseline)");
  return gbps;
}

// A registry matmul case (out = a @ b) against plain cublasGemmEx on the same tensors.
void bench_gemm(Bench& b, cublasHandle_t handle, const op_cases::OpCase& c, DType dt, json& summary) {
  op_cases::Bound t = op_cases::bind(c, dt, b.gpu());
  const double ours = b.time_ms([&] { c.forward(t); });
  const Tensor &a = t["a"], &w = t["b"];
  Tensor& out = t["out"];
  const int64_t M = a.size(0), K = a.size(1), N = w.size(1);
  // Plain cublasGemmEx, row-major through the column-major transpose identity.
  const auto type = dt == DType::f32 ? CUDA_R_32F : CUDA_R_16BF;
  const float alpha = 1.0f, beta = 0.0f;
  BENCH_CUBLAS(cublasSetStream(handle, static_cast<cudaStream_t>(current_stream(b.gpu()).native_handle())));
  const double base = b.time_ms([&] {
    BENCH_CUBLAS(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(N), static_cast<int>(M),
                              static_cast<int>(K), &alpha, w.data_ptr(), type, static_cast<int>(N), a.data_ptr(), type,
                              static_cast<int>(K), &beta, out.data_ptr(), type, static_cast<int>(N), CUBLAS_COMPUTE_32F,
                              CUBLAS_GEMM_DEFAULT));
  });
  const double tf = c.forward_flops / (ours * 1e9), tf_base = c.forward_flops / (base * 1e9);
  b.emit({{"bench", "gemm"},
          {"op", c.op},
          {"shape", c.label},
          {"dtype", dtype_name(dt)},
          {"library", c.cuda_library},
          {"ms", ours},
          {"tflops", tf},
          {"cublas_ms", base},
          {"cublas_tflops", tf_base},
          {"ratio", tf / tf_base}},
         "gemm      " + std::string(dtype_name(dt)) + " " + c.label + ": dtrain (calls " + c.cuda_library + ") " +
             std::to_string(tf) + " TFLOP/s, cublasGemmEx " + std::to_string(tf_base) + " (ratio " +
             std::to_string(tf / tf_base) + ")");
  if (c.label == "8192x8192x8192" && dt == DType::bf16) {
    summary["gemm_8192_bf16_ratio"] = tf / tf_base;
    summary["gemm_8192_bf16_tflops"] = tf;
  }
  if (dt == DType::bf16) summary["gemm_bf16_best_tflops"] = std::max(summary.value("gemm_bf16_best_tflops", 0.0), tf);
}

void memory_result(Bench& b, const op_cases::OpCase& c, const std::string& name, double bytes, double ms, double copy,
                   json& ratios) {
  const double gbps = bytes / (ms * 1e6);
  b.emit({{"bench", "memory"},
          {"op", name},
          {"case", c.label},
          {"bytes", bytes},
          {"ms", ms},
          {"gbps", gbps},
          {"copy_gbps", copy},
          {"ratio", gbps / copy}},
         "memory    " + name + " (" + c.label + "): " + std::to_string(gbps) + " GB/s (" +
             std::to_string(100.0 * gbps / copy) + "% of copy)");
  ratios[name] = gbps / copy;
}

// Every memory-bound case of the registry, in bf16, forward and backward.
void bench_memory(Bench& b, const op_cases::BenchScale& scale, double copy, json& summary) {
  json ratios = json::object();
  const DType dt = DType::bf16;
  for (const op_cases::OpCase& c : op_cases::bench_cases(scale)) {
    if (c.forward_flops > 0 || !c.forward_bytes) continue;  // GEMM-shaped: below
    op_cases::Bound t = op_cases::bind(c, dt, b.gpu());
    const std::string name = c.op == "cast" ? "cast " + c.label.substr(0, c.label.find(" n=")) : c.op;
    memory_result(b, c, name, c.forward_bytes(dt), b.time_ms([&] { c.forward(t); }), copy, ratios);
    if (c.backward && c.backward_bytes)
      memory_result(b, c, name + "_backward", c.backward_bytes(dt), b.time_ms([&] { c.backward(t); }), copy, ratios);
  }
  double worst = 1e9;
  for (auto& [k, v] : ratios.items()) worst = std::min(worst, v.get<double>());
  summary["memory_ratios"] = ratios;
  summary["memory_worst_ratio"] = worst;
}

void bench_fused_mlp(Bench& b, const op_cases::BenchScale& scale, json& summary) {
  const DType dt = DType::bf16;
  for (const op_cases::OpCase& c : op_cases::bench_cases(scale)) {
    const bool forward = c.op == "linear_gelu";
    if (!forward && c.op != "matmul_dgelu_bgrad") continue;
    op_cases::Bound t = op_cases::bind(c, dt, b.gpu());
    const ops::FusedEpilogueCounts before = ops::fused_epilogue_counts();
    const double fused_ms = b.time_ms([&] { forward ? c.forward(t) : c.backward(t); });
    const bool ran_fused = ops::fused_epilogue_counts().fused > before.fused;
    const Tensor& pre = t["pre"];
    const int64_t rows = pre.size(0), hidden = pre.size(1);
    Tensor product = Tensor::empty(pre.shape(), dt, b.gpu()), none;
    // linear_backward for the bias gradient alone: an input and weight with no columns.
    const Tensor no_x = Tensor::empty({rows, 0}, dt, b.gpu()), no_w = Tensor::empty({hidden, 0}, dt, b.gpu());
    const double unfused_ms = b.time_ms([&] {
      if (forward) {
        ops::linear(t["pre"], t["x"], t["weight"], t["bias"]);
        ops::gelu(t["out"], t["pre"]);
      } else {
        ops::matmul(product, t["dout"], t["weight"]);
        ops::gelu_backward(t["dpre"], product, t["pre"]);
        ops::linear_backward(none, none, t["dbias"], t["dpre"], no_x, no_w);
      }
    });
    b.emit({{"bench", "fused_mlp"},
            {"op", c.op},
            {"case", c.label},
            {"dtype", "bf16"},
            {"fused", ran_fused},
            {"ms", fused_ms},
            {"unfused_ms", unfused_ms},
            {"speedup", unfused_ms / fused_ms}},
           "fused mlp " + c.op + " (" + c.label + "): " + std::to_string(fused_ms) + " ms " +
               (ran_fused ? "fused in cuBLASLt" : "composed (cuBLASLt declined)") + ", unfused ops " +
               std::to_string(unfused_ms) + " ms");
    summary["fused_mlp_" + c.op + "_speedup"] = unfused_ms / fused_ms;
  }
}

// "attention IMPL (HOW) T=...: fwd X, bwd Y, fwd+bwd Z TFLOP/s"
std::string attention_line(const std::string& impl, const std::string& how, int64_t T, double fwd, double bwd,
                           double fwd_bwd) {
  char buf[160];
  std::snprintf(buf, sizeof buf, " T=%lld: fwd %.1f, bwd %.1f, fwd+bwd %.1f TFLOP/s", static_cast<long long>(T), fwd,
                bwd, fwd_bwd);
  return "attention " + impl + " (" + how + ")" + buf;
}

// The SDPA baseline on the benchmark's attention shapes (12 heads of 64, causal, bf16).
bench::SdpaRequest sdpa_request(const Options& o, const op_cases::BenchScale& scale) {
  bench::SdpaRequest r;
  r.python = o.python;
  r.script = o.sdpa_script;
  r.B = scale.attention_batch;
  r.NH = 12;
  r.hs = 64;
  r.T = scale.attention_seq_lens;
  r.iters = o.quick ? 5 : 20;
  return r;
}

// The SDPA rows of one attention T (or nothing when the baseline was skipped).
void emit_sdpa(Bench& b, const std::vector<json>& sdpa, int64_t T, json& summary) {
  for (const json& j : sdpa) {
    if (j.contains("skipped") || j.value("T", int64_t{-1}) != T) continue;
    const double tf = j.value("fwd_tflops", 0.0), tb = j.value("bwd_tflops", 0.0), tfb = j.value("fwd_bwd_tflops", 0.0);
    b.emit({{"bench", "attention"},
            {"impl", "sdpa"},
            {"T", T},
            {"dtype", "bf16"},
            {"fwd_ms", j.value("fwd_ms", 0.0)},
            {"fwd_tflops", tf},
            {"bwd_tflops", tb},
            {"fwd_bwd_ms", j.value("fwd_bwd_ms", 0.0)},
            {"fwd_bwd_tflops", tfb},
            {"implementation", "PyTorch " + j.value("torch", std::string("?")) + " scaled_dot_product_attention"}},
           attention_line("sdpa", "PyTorch " + j.value("torch", std::string("?")), T, tf, tb, tfb));
    summary["attention_sdpa_T" + std::to_string(T) + "_fwd_bwd_tflops"] = tfb;
  }
}

// Every dtrain CUDA attention path (DTRAIN_ATTENTION=matmul|flash|tc) per T:
// TFLOP/s forward, backward and forward+backward, with PyTorch's SDPA on the
// same shapes measured in the same call (sdpa_baseline.h) when torch is there.
void bench_attention(Bench& b, const op_cases::BenchScale& scale, json& summary) {
  const DType dt = DType::bf16;
  const std::vector<json> sdpa = b.opt().sdpa ? bench::run_sdpa_baseline(sdpa_request(b.opt(), scale))
                                              : std::vector<json>{{{"skipped", "--no-sdpa"}}};
  const std::string skipped = bench::sdpa_skipped_reason(sdpa);
  if (!skipped.empty()) {
    std::printf("attention sdpa: not measured (%s)\n", skipped.c_str());
    summary["attention_sdpa_skipped"] = skipped;
  }
  for (const op_cases::OpCase& c : op_cases::bench_cases(scale)) {
    if (c.op != "attention") continue;
    op_cases::Bound t = op_cases::bind(c, dt, b.gpu());
    const int64_t T = t["qkv"].size(1);
    for (const char* impl : {"matmul", "flash", "tc"}) {
      ::setenv("DTRAIN_ATTENTION", impl, 1);
      const std::string name = impl;
      if (name == "tc" &&
          !cuda::tc_attention_supports(t["qkv"], t["lse"].size(1), {&t["out"], &t["dqkv"], &t["dout"]})) {
        std::printf("attention tc %s: not taken by the tensor-core kernels (would fall back)\n", c.label.c_str());
        continue;
      }
      const double f = b.time_ms([&] { c.forward(t); });
      const double bw = b.time_ms([&] { c.backward(t); });
      const double tf = c.forward_flops / (f * 1e9), tb = c.backward_flops / (bw * 1e9);
      const double tfb = (c.forward_flops + c.backward_flops) / ((f + bw) * 1e9);
      // Attention is GEMM-shaped work: its forward is put next to the best
      // bf16 GEMM of this run (0 when GEMMs were not run).
      const double gemm_best = summary.value("gemm_bf16_best_tflops", 0.0);
      const std::string how = name == "matmul"  ? c.cuda_library
                              : name == "flash" ? "dtrain kernel, CUDA cores"
                                                : "dtrain kernel, tensor cores (mma.sync)";
      std::string line = attention_line(name, how, T, tf, tb, tfb);
      if (gemm_best > 0) line += ", fwd " + std::to_string(100.0 * tf / gemm_best) + "% of the run's best bf16 GEMM";
      b.emit({{"bench", "attention"},
              {"impl", name},
              {"case", c.label},
              {"T", T},
              {"dtype", "bf16"},
              {"fwd_ms", f},
              {"fwd_tflops", tf},
              {"bwd_ms", bw},
              {"bwd_tflops", tb},
              {"fwd_bwd_ms", f + bw},
              {"fwd_bwd_tflops", tfb},
              {"implementation", how},
              {"fwd_ratio_gemm", gemm_best > 0 ? tf / gemm_best : 0.0}},
             line);
      summary["attention_" + name + "_T" + std::to_string(T) + "_fwd_tflops"] = tf;
      summary["attention_" + name + "_T" + std::to_string(T) + "_fwd_bwd_tflops"] = tfb;
    }
    ::unsetenv("DTRAIN_ATTENTION");
    emit_sdpa(b, sdpa, T, summary);
  }
}

}  // namespace

// Only option setup runs outside the try below; what it can throw (bad_alloc) may end the program.
int main(int argc, char** argv) {  // NOLINT(bugprone-exception-escape)
  CLI::App app{"bench_cuda_ops: CUDA op set vs cuBLAS and copy bandwidth, measured in the same run"};
  Options opt;
  app.add_flag("--quick", opt.quick, "smaller shapes and fewer iterations (about 20 s)");
  app.add_option("--metrics-out", opt.metrics_out, "write JSON Lines results to this file");
  app.add_option("--device", opt.device, "CUDA device index")->check(CLI::NonNegativeNumber);
  app.add_flag("!--no-sdpa", opt.sdpa, "skip the PyTorch SDPA baseline of the attention rows");
  app.add_option("--python", opt.python, "interpreter for the SDPA baseline (needs torch with CUDA)");
  app.add_option("--sdpa-script", opt.sdpa_script, "path of attention_sdpa.py");
  CLI11_PARSE(app, argc, argv);

  if (!cuda_compiled() || cuda_device_count() <= opt.device) {
    std::printf("bench_cuda_ops: no CUDA device %d on this machine (%d visible); nothing to measure\n", opt.device,
                cuda_device_count());
    if (!opt.metrics_out.empty()) {
      std::ofstream out(opt.metrics_out);
      out << json{{"final", true}, {"skipped", true}, {"reason", "no CUDA device"}}.dump() << "\n";
    }
    return 0;
  }
  try {
    Bench b(opt);
    BENCH_CUDA(cudaSetDevice(opt.device));
    cudaDeviceProp prop{};
    BENCH_CUDA(cudaGetDeviceProperties(&prop, opt.device));
    std::printf("bench_cuda_ops on %s (sm_%d%d, %d SMs)%s\n", prop.name, prop.major, prop.minor,
                prop.multiProcessorCount, opt.quick ? " --quick" : "");
    json summary = {{"final", true}, {"gpu", prop.name}, {"quick", opt.quick}};
    const double copy = copy_gbps(b);
    summary["copy_gbps"] = copy;
    op_cases::BenchScale scale{};
    scale.elements = (opt.quick ? 8192 : 32768) * int64_t{1024};
    scale.channels = 1024;
    scale.vocab = 50304;
    scale.quick = opt.quick;
    scale.cuda = true;
    scale.gemm_shapes = {{4096, 4096, 4096}, {8192, 8192, 8192}, {8192, 2304, 768}};
    if (!opt.quick) scale.gemm_shapes.insert(scale.gemm_shapes.end(), {{8192, 768, 3072}, {8192, 50304, 768}});
    scale.attention_seq_lens = opt.quick ? std::vector<int64_t>{1024} : std::vector<int64_t>{1024, 2048};
    scale.attention_batch = opt.quick ? 4 : 8;
    cublasHandle_t handle = nullptr;
    BENCH_CUBLAS(cublasCreate(&handle));
    for (const op_cases::OpCase& c : op_cases::bench_cases(scale)) {
      if (c.op != "matmul") continue;
      bench_gemm(b, handle, c, DType::bf16, summary);
      if (c.label == "4096x4096x4096") bench_gemm(b, handle, c, DType::f32, summary);
    }
    cublasDestroy(handle);
    bench_memory(b, scale, copy, summary);
    bench_fused_mlp(b, scale, summary);
    bench_attention(b, scale, summary);
    const MemoryStats mem = memory_stats(b.gpu());
    summary["peak_bytes"] = mem.peak_bytes;
    summary["reserved_bytes"] = mem.reserved_bytes;
    std::printf("summary: %s\n", summary.dump().c_str());
    if (b.out().is_open()) b.out() << summary.dump() << "\n";
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_cuda_ops: %s\n", e.what());
    return 1;
  }
  return 0;
}
