// bench_cuda_ops: how close the CUDA op set comes to the hardware.
//
//   GEMM       TFLOP/s of ops::matmul (cuBLASLt, cached plan) next to plain
//              cublasGemmEx on the same shape, same run: ratio = ours / cuBLAS.
//   memory     GB/s of the memory-bound ops next to a device-to-device copy
//              (cudaMemcpyAsync) in the same run. Bytes are the minimum each
//              op must move (every input read once, every output written
//              once; accumulated outputs read and written), so extra passes
//              show up as a lower figure. Copy: 2 x size (read + write).
//   attention  TFLOP/s with the causal FLOP count (half of the T x T
//              products: 2 GEMMs forward, 5 backward, 2*T*T*hs each, halved),
//              for both implementations (DTRAIN_ATTENTION=matmul|flash).
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

#include "dtrain/allocator.h"
#include "dtrain/device.h"
#include "dtrain/error.h"
#include "dtrain/ops.h"
#include "dtrain/stream.h"

using namespace dtrain;
using json = nlohmann::json;

namespace {

struct Options {
  bool quick = false;
  std::string metrics_out;
  int device = 0;
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
    const int warmup = opt_.quick ? 2 : 5;
    const int iters = opt_.quick ? 5 : 20;
    for (int i = 0; i < warmup; ++i) fn();
    const Stream s = current_stream(gpu_);
    Event start(true), stop(true);
    start.record(s);
    for (int i = 0; i < iters; ++i) fn();
    stop.record(s);
    stop.synchronize();
    return start.elapsed_ms(stop) / iters;
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

Tensor random_on(const Device& d, const Shape& shape, DType dt, float lo = -1.0f, float hi = 1.0f) {
  Tensor host = Tensor::empty(shape, DType::f32);
  float* p = host.data<float>();
  uint32_t state = 12345;
  for (int64_t i = 0; i < host.numel(); ++i) {
    state = state * 1664525u + 1013904223u;
    p[i] = lo + (hi - lo) * static_cast<float>(state >> 8) / 16777216.0f;
  }
  Tensor dev = host.to(d);
  if (dt == DType::f32) return dev;
  Tensor low = Tensor::empty(shape, dt, d);
  ops::cast(low, dev);
  return low;
}

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

void bench_gemm(Bench& b, cublasHandle_t handle, int64_t M, int64_t N, int64_t K, DType dt, json& summary) {
  Tensor a = random_on(b.gpu(), {M, K}, dt), w = random_on(b.gpu(), {K, N}, dt);
  Tensor out = Tensor::empty({M, N}, dt, b.gpu());
  const double ours = b.time_ms([&] { ops::matmul(out, a, w); });
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
  const double flops = 2.0 * M * N * K;
  const double tf = flops / (ours * 1e9), tf_base = flops / (base * 1e9);
  const std::string shape = std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K);
  b.emit({{"bench", "gemm"},
          {"shape", shape},
          {"dtype", dtype_name(dt)},
          {"ms", ours},
          {"tflops", tf},
          {"cublas_ms", base},
          {"cublas_tflops", tf_base},
          {"ratio", tf / tf_base}},
         "gemm      " + std::string(dtype_name(dt)) + " " + shape + ": dtrain (calls cuBLASLt) " + std::to_string(tf) +
             " TFLOP/s, cublasGemmEx " + std::to_string(tf_base) + " (ratio " + std::to_string(tf / tf_base) + ")");
  if (M == 8192 && N == 8192 && K == 8192 && dt == DType::bf16) {
    summary["gemm_8192_bf16_ratio"] = tf / tf_base;
    summary["gemm_8192_bf16_tflops"] = tf;
  }
  if (dt == DType::bf16) summary["gemm_bf16_best_tflops"] = std::max(summary.value("gemm_bf16_best_tflops", 0.0), tf);
}

void memory_result(Bench& b, const std::string& name, double bytes, double ms, double copy, json& ratios) {
  const double gbps = bytes / (ms * 1e6);
  b.emit({{"bench", "memory"},
          {"op", name},
          {"bytes", bytes},
          {"ms", ms},
          {"gbps", gbps},
          {"copy_gbps", copy},
          {"ratio", gbps / copy}},
         "memory    " + name + ": " + std::to_string(gbps) + " GB/s (" + std::to_string(100.0 * gbps / copy) +
             "% of copy)");
  ratios[name] = gbps / copy;
}

void bench_memory(Bench& b, double copy, json& summary) {
  json ratios = json::object();
  const int64_t rows = b.opt().quick ? 8192 : 32768, C = 1024;
  const DType dt = DType::bf16;
  const double e = 2.0;  // bytes per bf16 element
  const double nc = static_cast<double>(rows * C);
  {
    Tensor x = random_on(b.gpu(), {rows, C}, dt), w = random_on(b.gpu(), {C}, dt), bias = random_on(b.gpu(), {C}, dt);
    Tensor out = Tensor::empty({rows, C}, dt, b.gpu()), mean = Tensor::empty({rows}, DType::f32, b.gpu()),
           rstd = Tensor::empty({rows}, DType::f32, b.gpu());
    memory_result(b, "layernorm_fwd", nc * e * 2 + rows * 8.0,
                  b.time_ms([&] { ops::layernorm(out, mean, rstd, x, w, bias, 1e-5f); }), copy, ratios);
    Tensor dx = Tensor::zeros({rows, C}, dt, b.gpu()), dw = Tensor::zeros({C}, dt, b.gpu()),
           db = Tensor::zeros({C}, dt, b.gpu());
    memory_result(b, "layernorm_bwd", nc * e * 4 + rows * 8.0,
                  b.time_ms([&] { ops::layernorm_backward(dx, dw, db, out, x, w, mean, rstd); }), copy, ratios);
    memory_result(b, "gelu_fwd", nc * e * 2, b.time_ms([&] { ops::gelu(out, x); }), copy, ratios);
    memory_result(b, "gelu_bwd", nc * e * 4, b.time_ms([&] { ops::gelu_backward(dx, out, x); }), copy, ratios);
    memory_result(b, "add", nc * e * 3, b.time_ms([&] { ops::add(out, x, dx); }), copy, ratios);
    Tensor f = Tensor::empty({rows, C}, DType::f32, b.gpu());
    memory_result(b, "cast_bf16_to_f32", nc * 6, b.time_ms([&] { ops::cast(f, x); }), copy, ratios);
    memory_result(b, "cast_f32_to_bf16", nc * 6, b.time_ms([&] { ops::cast(out, f); }), copy, ratios);
  }
  {
    const int64_t n = b.opt().quick ? 1024 : 4096, V = 50304;
    Tensor logits = random_on(b.gpu(), {n, V}, dt, -4.0f, 4.0f), dlogits = Tensor::empty({n, V}, dt, b.gpu());
    Tensor losses = Tensor::empty({n}, DType::f32, b.gpu());
    std::vector<float> t(n);
    for (int64_t i = 0; i < n; ++i) t[i] = static_cast<float>((i * 7919) % V);
    Tensor targets = Tensor::from_vector(t, {n}, DType::i32).to(b.gpu());
    memory_result(b, "cross_entropy", static_cast<double>(n * V) * e * 2,
                  b.time_ms([&] { ops::softmax_cross_entropy(losses, dlogits, logits, targets, 1.0f, -100); }), copy,
                  ratios);
  }
  {
    // 124M parameters in GPT-2-small-like tensors: per element param r/w (8), bf16 grad (2),
    // moments r/w (16), bf16 copy (2) = 28 bytes.
    const std::vector<int64_t> sizes =
        b.opt().quick ? std::vector<int64_t>{768 * 2304, 768 * 768, 768, 50304 * 768}
                      : std::vector<int64_t>{768 * 2304, 768 * 768, 768 * 3072, 3072 * 768, 768, 50304 * 768};
    const int layers = b.opt().quick ? 2 : 12;
    std::vector<ops::AdamWTensor> list;
    double elems = 0;
    for (int l = 0; l < layers; ++l) {
      for (int64_t s : sizes) {
        if (l > 0 && s == 50304 * 768) continue;
        ops::AdamWTensor t;
        t.param = random_on(b.gpu(), {s}, DType::f32);
        t.grad = random_on(b.gpu(), {s}, DType::bf16);
        t.exp_avg = Tensor::zeros({s}, DType::f32, b.gpu());
        t.exp_avg_sq = Tensor::zeros({s}, DType::f32, b.gpu());
        t.param_copy = Tensor::empty({s}, DType::bf16, b.gpu());
        t.weight_decay = 0.1f;
        list.push_back(t);
        elems += static_cast<double>(s);
      }
    }
    ops::AdamWConfig config;
    memory_result(b, "adamw", elems * 28, b.time_ms([&] { ops::adamw_step(list, config); }), copy, ratios);
    std::vector<Tensor> grads;
    grads.reserve(list.size());
    for (auto& t : list) grads.push_back(t.grad);
    Tensor norm = Tensor::empty({1}, DType::f32, b.gpu());
    memory_result(b, "global_norm", elems * 2, b.time_ms([&] { ops::global_norm_squared(norm, grads); }), copy, ratios);
  }
  double worst = 1e9;
  for (auto& [k, v] : ratios.items()) worst = std::min(worst, v.get<double>());
  summary["memory_ratios"] = ratios;
  summary["memory_worst_ratio"] = worst;
}

void bench_attention(Bench& b, json& summary) {
  const int64_t B = b.opt().quick ? 4 : 8, C = 768, NH = 12, hs = C / NH;
  const DType dt = DType::bf16;
  for (int64_t T : b.opt().quick ? std::vector<int64_t>{1024} : std::vector<int64_t>{1024, 2048}) {
    Tensor qkv = random_on(b.gpu(), {B, T, 3 * C}, dt);
    Tensor out = Tensor::empty({B, T, C}, dt, b.gpu()), lse = Tensor::empty({B, NH, T}, DType::f32, b.gpu());
    Tensor dout = random_on(b.gpu(), {B, T, C}, dt), dqkv = Tensor::zeros({B, T, 3 * C}, dt, b.gpu());
    const double fwd_flops = 2.0 * 2.0 * B * NH * static_cast<double>(T) * T * hs / 2.0;
    for (const char* impl : {"matmul", "flash"}) {
      ::setenv("DTRAIN_ATTENTION", impl, 1);
      const double f = b.time_ms([&] { ops::attention(out, lse, qkv, NH); });
      const double bw = b.time_ms([&] { ops::attention_backward(dqkv, dout, qkv, out, lse, NH); });
      const double tf = fwd_flops / (f * 1e9), tb = 2.5 * fwd_flops / (bw * 1e9);
      // The ratio that matters: attention is GEMM-shaped work, so it is put
      // next to the best bf16 GEMM of this run (0 when GEMMs were not run).
      const double gemm_best = summary.value("gemm_bf16_best_tflops", 0.0);
      const std::string how =
          std::string(impl) == "matmul" ? "cuBLAS batched GEMMs + dtrain softmax kernel" : "dtrain kernel, CUDA cores";
      const std::string vs_gemm =
          gemm_best > 0 ? ", fwd " + std::to_string(100.0 * tf / gemm_best) + "% of the run's best bf16 GEMM" : "";
      b.emit({{"bench", "attention"},
              {"impl", impl},
              {"B", B},
              {"T", T},
              {"C", C},
              {"NH", NH},
              {"dtype", "bf16"},
              {"fwd_ms", f},
              {"fwd_tflops", tf},
              {"bwd_ms", bw},
              {"bwd_tflops", tb},
              {"implementation", how},
              {"fwd_ratio_gemm", gemm_best > 0 ? tf / gemm_best : 0.0}},
             "attention " + std::string(impl) + " (" + how + ") B=" + std::to_string(B) + " T=" + std::to_string(T) +
                 ": fwd " + std::to_string(tf) + " TFLOP/s, bwd " + std::to_string(tb) + " TFLOP/s" + vs_gemm);
      summary["attention_" + std::string(impl) + "_T" + std::to_string(T) + "_fwd_tflops"] = tf;
    }
    ::unsetenv("DTRAIN_ATTENTION");
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
    cublasHandle_t handle = nullptr;
    BENCH_CUBLAS(cublasCreate(&handle));
    const std::vector<std::array<int64_t, 3>> shapes =
        opt.quick
            ? std::vector<std::array<int64_t, 3>>{{4096, 4096, 4096}, {8192, 8192, 8192}, {8192, 2304, 768}}
            : std::vector<std::array<int64_t, 3>>{
                  {4096, 4096, 4096}, {8192, 8192, 8192}, {8192, 2304, 768}, {8192, 768, 3072}, {8192, 50304, 768}};
    for (const auto& s : shapes) bench_gemm(b, handle, s[0], s[1], s[2], DType::bf16, summary);
    bench_gemm(b, handle, 4096, 4096, 4096, DType::f32, summary);
    cublasDestroy(handle);
    bench_memory(b, copy, summary);
    bench_attention(b, summary);
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
