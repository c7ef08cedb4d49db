// The kernels suite: what one device computes and moves.
//
// On a GPU: cuBLAS GEMM TFLOP/s in bf16, TF32 and f32 and dtrain's own
// ops::matmul in bf16, each against the datasheet peak of the model
// (datasheet_peaks.cpp), and device copy bandwidth against the datasheet
// memory bandwidth. On a CPU there is no datasheet: GEMM (ops::matmul f32)
// is compared with an FMA loop measured in the same run, and dtrain's copy
// with memcpy. On both, dtrain's memory-bound kernels (add, gelu, cast,
// AdamW) are compared with the copy bandwidth just measured: they move bytes
// and should move them about as fast as a copy.
//
// Every rank measures its own device at the same time (ranks of one node
// share it, as training does); rank 0's figures are reported, the per-rank
// comparison is the stragglers suite's. Each measurement is a bounded loop
// (time_calls): a call far slower than expected ends it early.
#include <cstring>
#include <vector>

#include "bench_suite.h"
#include "datasheet_peaks.h"
#include "device_facts.h"
#include "dtrain/ops.h"
#include "machine_baselines.h"

namespace dtrain::bench {
namespace {

void sync(const Tensor& t) {
  (void)t.narrow(0, 1).to(Device::cpu());
}

// Bytes moved per element by one call of each memory-bound kernel (f32 unless named).
struct MemoryKernel {
  const char* name;
  double bytes_per_element;
};

class KernelsSuite final : public BenchSuite {
 public:
  const char* name() const override { return "kernels"; }
  const char* description() const override { return "GEMM and memory bandwidth of one device"; }
  void add_options(CLI::App& /*app*/) override {}

  void run(BenchContext& ctx) override {
    const double row_s = ctx.common.row_limit();
    const bool gpu = ctx.device.is_cuda();
    const std::string gpu_name = gpu ? gpu_model(ctx) : "";
    const DatasheetPeak* peak = gpu ? find_datasheet_peak(gpu_name) : nullptr;
    if (gpu && peak == nullptr && ctx.lead())
      std::printf("# no datasheet entry for '%s': figures are reported without a reference\n", gpu_name.c_str());
    gemm_checks(ctx, peak, row_s);
    const double copy = copy_check(ctx, peak, row_s);
    memory_kernel_checks(ctx, copy, row_s);
  }

 private:
  static std::string gpu_model(const BenchContext& ctx) {
    const auto& gpu = ctx.facts["gpu"];
    if (gpu.is_null() || gpu["devices"].empty()) return "";
    const size_t i = static_cast<size_t>(ctx.device.index());
    return i < gpu["devices"].size() ? gpu["devices"][i]["name"].get<std::string>() : "";
  }

  static void record(BenchContext& ctx, const Check& c, const nlohmann::json& row) {
    if (!ctx.lead()) return;
    ctx.report.add_row("kernels", row);
    ctx.progress.say("kernels", c.name + ": " + std::to_string(c.value) + " " + c.unit);
    ctx.report.add_check(c);
  }

  // ops::matmul f32 GFLOP/s at n^3 (CPU), or TFLOP/s of bf16 (GPU).
  static double dtrain_matmul(const Device& device, DType dtype, int64_t n, double seconds, bool* cut) {
    Tensor a = Tensor::full({n, n}, 0.5, dtype, device);
    Tensor b = Tensor::full({n, n}, 0.25, dtype, device);
    Tensor out = Tensor::empty({n, n}, dtype, device);
    ops::matmul(out, a, b);
    sync(out);
    const TimedCalls t = time_calls(
        [&] {
          ops::matmul(out, a, b);
          sync(out);
        },
        10, seconds);
    *cut = t.cut_short;
    return 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n) / t.best();
  }

  static void gemm_checks(BenchContext& ctx, const DatasheetPeak* peak, double row_s) {
    const bool quick = ctx.common.quick;
    if (ctx.device.is_cpu()) {
      const int threads = cpu_threads_per_rank();
      ctx.progress.say("kernels", "FMA loop on " + std::to_string(threads) + " thread(s)");
      const double fma = cpu_fma_gflops(threads, quick ? 0.3 : 1.0);
      const int64_t n = quick ? 512 : 1024;
      bool cut = false;
      const double gflops = dtrain_matmul(ctx.device, DType::f32, n, row_s, &cut) / 1e9;
      Check c{"kernels", "GEMM f32 " + std::to_string(n) + "^3 (ops::matmul)",
              gflops,    "GFLOP/s",
              fma,       "measured in this run (FMA loop)",
              0.3,       0.05,
              false,     fma > 0 ? "" : "this CPU has no AVX2/FMA: no baseline"};
      if (cut) c.detail = "cut short by the time bound (" + std::to_string(row_s) + " s)";
      record(ctx, c,
             {{"kind", "gemm"},
              {"dtype", "f32"},
              {"n", n},
              {"gflops", gflops},
              {"fma_gflops", fma},
              {"threads", threads},
              {"cut_short", cut}});
      return;
    }
#ifdef DTRAIN_WITH_CUDA
    const int n = quick ? 4096 : 8192;
    for (const char* kind : {"bf16", "tf32", "f32"}) {
      ctx.progress.say("kernels", std::string("cuBLAS GEMM ") + kind + " " + std::to_string(n) + "^3");
      const double tflops = cublas_gemm_tflops(ctx.device.index(), kind, n, row_s);
      const std::string k = kind;
      const double ref = peak == nullptr ? 0
                         : k == "bf16"   ? peak->bf16_tflops
                         : k == "tf32"   ? peak->tf32_tflops
                                         : peak->f32_tflops;
      record(ctx,
             {"kernels", "GEMM " + k + " " + std::to_string(n) + "^3 (cuBLAS)", tflops, "TFLOP/s", ref,
              peak ? std::string("datasheet: ") + peak->source : "", 0.6, 0.3, false, ""},
             {{"kind", "gemm"}, {"dtype", k}, {"n", n}, {"tflops", tflops}, {
                "library",
                "cublas"
              }});
    }
    bool cut = false;
    const double tflops = dtrain_matmul(ctx.device, DType::bf16, n, row_s, &cut) / 1e12;
    record(ctx,
           {"kernels", "GEMM bf16 " + std::to_string(n) + "^3 (ops::matmul)", tflops, "TFLOP/s",
            peak ? peak->bf16_tflops : 0, peak ? std::string("datasheet: ") + peak->source : "", 0.6, 0.3, false,
            cut ? "cut short by the time bound" : ""},
           {{"kind", "gemm"}, {"dtype", "bf16"}, {"n", n}, {"tflops", tflops}, {"library", "dtrain"}, {
              "cut_short",
              cut
            }});
#else
    (void)peak;
#endif
  }

  // Returns the copy bandwidth the memory-bound kernels are compared with.
  static double copy_check(BenchContext& ctx, const DatasheetPeak* peak, double row_s) {
    const bool gpu = ctx.device.is_cuda();
    const size_t bytes =
        gpu ? (ctx.common.quick ? (512u << 20) : (2048u << 20)) : (ctx.common.quick ? (64u << 20) : (256u << 20));
    ctx.progress.say("kernels", "copy bandwidth, " + std::to_string(bytes >> 20) + " MiB");
    const double copy = copy_gbps(ctx.device, bytes, row_s);
    double ref = 0;
    std::string ref_kind;
    if (gpu && peak != nullptr) {
      ref = peak->memory_gbps;
      ref_kind = std::string("datasheet: ") + peak->source;
    } else if (!gpu) {
      ref = memcpy_gbps(bytes, row_s);
      ref_kind = "measured in this run (std::memcpy, 1 thread)";
    }
    record(ctx,
           {"kernels", "copy " + std::to_string(bytes >> 20) + " MiB (Tensor::copy_)", copy, "GB/s", ref, ref_kind,
            gpu ? 0.75 : 0.5, gpu ? 0.5 : 0.1, false, "traffic = bytes read + bytes written"},
           {{"kind", "copy"}, {"bytes", bytes}, {"gbps", copy}, {"reference_gbps", ref}});
    return copy;
  }

  static double memcpy_gbps(size_t bytes, double seconds) {
    std::vector<char> a(bytes, 1), b(bytes, 0);
    std::memcpy(b.data(), a.data(), bytes);  // touch pages
    const TimedCalls t = time_calls([&] { std::memcpy(b.data(), a.data(), bytes); }, 10, seconds);
    return 2.0 * static_cast<double>(bytes) / t.best() / 1e9;
  }

  static void memory_kernel_checks(BenchContext& ctx, double copy, double row_s) {
    const bool gpu = ctx.device.is_cuda();
    const int64_t n = gpu ? (ctx.common.quick ? (64 << 20) : (256 << 20)) : (ctx.common.quick ? (4 << 20) : (16 << 20));
    const Device d = ctx.device;
    Tensor x = Tensor::full({n}, 0.5, DType::f32, d), y = Tensor::full({n}, 0.25, DType::f32, d);
    Tensor out = Tensor::empty({n}, DType::f32, d), low = Tensor::empty({n}, DType::bf16, d);
    Tensor m = Tensor::zeros({n}, DType::f32, d), v = Tensor::zeros({n}, DType::f32, d);
    std::vector<ops::AdamWTensor> adamw = {{out, y, m, v, Tensor(), 0.1f}};
    ops::AdamWConfig config;
    // Reads + writes per element: add 2 + 1, gelu 1 + 1, cast f32 -> bf16
    // 4 + 2 bytes, AdamW reads param, grad, m, v and writes param, m, v.
    const std::vector<std::pair<MemoryKernel, std::function<void()>>> kernels = {
        {{"add", 12}, [&] { ops::add(out, x, y); }},
        {{"gelu", 8}, [&] { ops::gelu(out, x); }},
        {{"cast f32->bf16", 6}, [&] { ops::cast(low, x); }},
        {{"adamw_step", 28}, [&] { ops::adamw_step(adamw, config); }},
    };
    for (const auto& kernel : kernels) {
      const MemoryKernel& k = kernel.first;
      const std::function<void()>& call = kernel.second;  // a reference, not a structured binding: captured below
      call();
      sync(out);
      const TimedCalls t = time_calls(
          [&] {
            call();
            sync(out);
            sync(low);
          },
          20, row_s);
      const double gbps = k.bytes_per_element * static_cast<double>(n) / t.best() / 1e9;
      record(ctx,
             {"kernels", std::string("memory-bound ") + k.name, gbps, "GB/s", copy, "copy measured in this run",
              gpu ? 0.6 : 0.3, gpu ? 0.2 : 0.05, false, t.cut_short ? "cut short by the time bound" : ""},
             {{"kind", "memory_kernel"},
              {"kernel", k.name},
              {"elements", n},
              {"gbps", gbps},
              {"copy_gbps", copy},
              {"cut_short", t.cut_short}});
    }
  }
};

DTRAIN_REGISTER_BENCH_SUITE(KernelsSuite);

}  // namespace
}  // namespace dtrain::bench
