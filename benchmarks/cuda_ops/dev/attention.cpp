// dev/attention: the CUDA attention versions side by side (in the way of
// llm.c's dev/cuda), each checked against the batched-GEMM version and timed
// per pass, with PyTorch's SDPA run in the same call when torch is importable
// (attention_sdpa.py).
//
//   version 1  matmul  cuBLAS batched GEMMs + dtrain softmax, [T, T] scores in memory
//   version 2  flash   tiled online softmax on CUDA cores (attention_flash.cu)
//   version 3  tc      tiled online softmax on tensor cores, mma.sync (attention_tc_*.cu)
//
// Napkin math, H200 SXM (989 TFLOP/s dense bf16 on the datasheet, reached by
// wgmma; 4.27 TB/s measured device-to-device copy), B=8, 12 heads of 64,
// causal (FLOPs for the causal half, as the issue counts them):
//   forward   FLOPs 2 B NH T^2 hs: T=1024 12.9 GFLOP = 13.0 us at peak;
//             bytes at least qkv + out + lse = 8 B T C + 4 B NH T = 50.7 MB = 11.9 us.
//             T=2048: 51.5 GFLOP = 52 us; 101 MB = 24 us. Compute-bound from T~1k.
//   backward  FLOPs 2.5 x forward (5 GEMMs; the tc version executes 7, its
//             determinism costs 2 more), bytes qkv + out + dout + lse + dqkv
//             read and written = 18 B T C + 8 B NH T: T=1024 32 GFLOP = 33 us,
//             114 MB = 27 us.
// The line per version prints TFLOP/s and the fraction of the bound
// max(FLOPs / 989 TFLOP/s, bytes / 4.27 TB/s) reached.
#include <cuda_runtime_api.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "attention_tc.h"
#include "cuda_timing.h"
#include "dtrain/dtrain.h"
#include "dtrain/ops.h"
#include "dtrain/stream.h"
#include "sdpa_baseline.h"

using namespace dtrain;

namespace {

constexpr double kPeakTflops = 989.0;  // H200 dense bf16 / f16
constexpr double kPeakGBps = 4270.0;   // measured d2d copy on the H200 (BUILD-NOTES)

struct Options {
  int64_t B = 8, NH = 12, hs = 64;
  std::vector<int64_t> T{1024, 2048};
  std::string dtype = "bf16";
  bool full = false;
  int iters = 20;
  std::string python = "python3";
  std::string sdpa_script = DTRAIN_SDPA_SCRIPT;  // the source tree's, unless moved
  bool sdpa = true;
};

Tensor random_on(const Device& gpu, const Shape& shape, DType dt, uint32_t seed) {
  Tensor host = Tensor::empty(shape, DType::f32);
  float* p = host.data<float>();
  uint32_t state = seed;
  for (int64_t i = 0; i < host.numel(); ++i) {
    state = state * 1664525u + 1013904223u;
    p[i] = -1.0f + 2.0f * static_cast<float>(state >> 8) / 16777216.0f;
  }
  Tensor low = Tensor::empty(shape, dt);
  ops::cast(low, host);
  return low.to(gpu);
}

// max |a - b| / max(1, max |b|) over two CUDA tensors of one shape.
double normalised_error(const Tensor& a, const Tensor& b) {
  auto host = [](const Tensor& t) {
    Tensor h = t.to(Device::cpu());
    if (h.dtype() == DType::f32) return h;
    Tensor f = Tensor::empty(h.shape(), DType::f32);
    ops::cast(f, h);
    return f;
  };
  const Tensor x = host(a), y = host(b);
  double worst = 0.0, scale = 1.0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    const double d = std::abs(static_cast<double>(x.data<float>()[i]) - y.data<float>()[i]);
    worst = std::isnan(d) ? INFINITY : std::max(worst, d);
    scale = std::max(scale, std::abs(static_cast<double>(y.data<float>()[i])));
  }
  return worst / scale;
}

struct Run {
  Tensor out, lse, dqkv;
  double fwd_ms, bwd_ms;
};

// One version: outputs of one forward and one backward (from dqkv = 0), then timings.
Run run_version(const std::string& version, const Options& o, const Device& gpu, const Tensor& qkv, const Tensor& dout,
                int64_t T) {
  const DType dt = qkv.dtype();
  const int64_t C = o.NH * o.hs;
  Run r{Tensor::empty({o.B, T, C}, dt, gpu), Tensor::empty({o.B, o.NH, T}, DType::f32, gpu),
        Tensor::zeros({o.B, T, 3 * C}, dt, gpu), 0.0, 0.0};
  std::function<void()> fwd, bwd;
  if (version == "tc") {
    fwd = [&] { cuda::attention_tc(r.out, r.lse, qkv, o.NH, !o.full); };
    bwd = [&] { cuda::attention_backward_tc(r.dqkv, dout, qkv, r.out, r.lse, o.NH, !o.full); };
  } else {
    ::setenv("DTRAIN_ATTENTION", version.c_str(), 1);
    fwd = [&] { ops::attention(r.out, r.lse, qkv, o.NH); };
    bwd = [&] { ops::attention_backward(r.dqkv, dout, qkv, r.out, r.lse, o.NH); };
  }
  fwd();
  bwd();
  current_stream(gpu).synchronize();
  Tensor dqkv_once = r.dqkv.to(Device::cpu());
  r.fwd_ms = bench::time_cuda_ms(gpu, 3, o.iters, fwd);
  r.bwd_ms = bench::time_cuda_ms(gpu, 3, o.iters, bwd);  // adds into dqkv again: only the time is kept
  r.dqkv = dqkv_once.to(gpu);
  ::unsetenv("DTRAIN_ATTENTION");
  return r;
}

// attention_sdpa.py with the same shapes (sdpa_baseline.h).
std::vector<nlohmann::json> run_sdpa(const Options& o) {
  bench::SdpaRequest r;
  r.python = o.python;
  r.script = o.sdpa_script;
  r.B = o.B;
  r.NH = o.NH;
  r.hs = o.hs;
  r.T = o.T;
  r.dtype = o.dtype;
  r.full = o.full;
  r.iters = o.iters;
  return bench::run_sdpa_baseline(r);
}

int run(const Options& o) {
  if (cuda_device_count() == 0) {
    std::printf("dev/attention: no CUDA device visible; nothing to measure\n");
    return 0;
  }
  const Device gpu = Device::cuda(0);
  const DType dt = o.dtype == "f16" ? DType::f16 : DType::bf16;
  const int64_t C = o.NH * o.hs;
  const std::vector<nlohmann::json> sdpa = o.sdpa ? run_sdpa(o) : std::vector<nlohmann::json>{};
  const std::string sdpa_skipped = bench::sdpa_skipped_reason(sdpa);
  if (!sdpa_skipped.empty()) std::printf("sdpa: skipped (%s)\n", sdpa_skipped.c_str());
  int failures = 0;
  for (int64_t T : o.T) {
    const Tensor qkv = random_on(gpu, {o.B, T, 3 * C}, dt, 1);
    const Tensor dout = random_on(gpu, {o.B, T, C}, dt, 2);
    const double causal_share = o.full ? 1.0 : 0.5;
    const double fwd_flops = 4.0 * o.B * o.NH * static_cast<double>(T) * T * o.hs * causal_share;
    const double elt = dt == DType::f32 ? 4.0 : 2.0;
    const double fwd_bytes = 4.0 * o.B * T * C * elt + 4.0 * o.B * o.NH * T;
    const double bwd_bytes = 9.0 * o.B * T * C * elt + 8.0 * o.B * o.NH * T;
    std::printf("== B=%lld T=%lld NH=%lld hs=%lld %s %s\n", static_cast<long long>(o.B), static_cast<long long>(T),
                static_cast<long long>(o.NH), static_cast<long long>(o.hs), o.dtype.c_str(),
                o.full ? "full" : "causal");
    std::vector<std::string> versions{"tc"};
    if (!o.full) versions = {"matmul", "flash", "tc"};  // only tc has a full mask
    Run ref{};
    for (const std::string& v : versions) {
      const Run r = run_version(v, o, gpu, qkv, dout, T);
      std::string check = "reference";
      if (v == "matmul") {
        ref = r;
      } else if (ref.out.defined()) {
        const double eo = normalised_error(r.out, ref.out), eg = normalised_error(r.dqkv, ref.dqkv);
        const bool ok = eo <= 2e-2 && eg <= 5e-2;  // bf16 roundings of P and dS, both sides
        failures += ok ? 0 : 1;
        check = std::string(ok ? "ok" : "MISMATCH") + " vs matmul: out " + std::to_string(eo) + ", dqkv " +
                std::to_string(eg);
      } else {
        check = "unchecked here (full mask; tests/gpu/test_flash_attention checks it)";
      }
      const double tf = fwd_flops / (r.fwd_ms * 1e9), tb = 2.5 * fwd_flops / (r.bwd_ms * 1e9);
      const double tfb = 3.5 * fwd_flops / ((r.fwd_ms + r.bwd_ms) * 1e9);
      const double fwd_bound_ms = std::max(fwd_flops / (kPeakTflops * 1e9), fwd_bytes / (kPeakGBps * 1e6));
      const double bwd_bound_ms = std::max(2.5 * fwd_flops / (kPeakTflops * 1e9), bwd_bytes / (kPeakGBps * 1e6));
      std::printf(
          "%-7s fwd %8.3f ms %7.1f TFLOP/s (%4.1f%% of bound) | bwd %8.3f ms %7.1f TFLOP/s (%4.1f%%) | "
          "fwd+bwd %7.1f TFLOP/s | %s\n",
          v.c_str(), r.fwd_ms, tf, 100.0 * fwd_bound_ms / r.fwd_ms, r.bwd_ms, tb, 100.0 * bwd_bound_ms / r.bwd_ms, tfb,
          check.c_str());
    }
    for (const auto& j : sdpa) {
      if (j.value("T", int64_t{-1}) != T) continue;
      std::printf("%-7s fwd %8.3f ms %7.1f TFLOP/s                    | fwd+bwd %7.1f TFLOP/s | PyTorch %s\n", "sdpa",
                  j.value("fwd_ms", 0.0), j.value("fwd_tflops", 0.0), j.value("fwd_bwd_tflops", 0.0),
                  j.value("torch", std::string("?")).c_str());
    }
    std::fflush(stdout);
  }
  return failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {  // NOLINT(bugprone-exception-escape)
  Options o;
  CLI::App app{"dev/attention: CUDA attention versions side by side, with PyTorch SDPA"};
  app.add_option("--B", o.B, "batch");
  app.add_option("--T", o.T, "sequence lengths")->delimiter(',');
  app.add_option("--NH", o.NH, "heads");
  app.add_option("--hs", o.hs, "head size (64 or 128 for tc)");
  app.add_option("--dtype", o.dtype, "bf16 or f16")->check(CLI::IsMember({"bf16", "f16"}));
  app.add_flag("--full", o.full, "full mask (tc only) instead of causal");
  app.add_option("--iters", o.iters, "timed calls per pass");
  app.add_option("--python", o.python, "interpreter for the SDPA baseline");
  app.add_option("--sdpa-script", o.sdpa_script, "path of attention_sdpa.py");
  app.add_flag("!--no-sdpa", o.sdpa, "skip the PyTorch SDPA baseline");
  CLI11_PARSE(app, argc, argv);
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dev/attention: %s\n", e.what());
    return 1;
  }
}
