// cuBLASLt GEMM with cached plans (see gemm.cuh).
//
// cuBLASLt is column-major. A row-major matrix X[r, c] is the column-major
// X^T (c x r, leading dimension c), so the row-major product
// out = op(a) @ op(b) is computed as the column-major out^T = op(b)^T @ op(a)^T:
// cuBLAS "A" is our b, cuBLAS "B" is our a, and m/n swap.
#include <cublasLt.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>

#include "common.cuh"
#include "gemm.cuh"

namespace dtrain::cuda {
namespace {

constexpr size_t kWorkspaceBytes = size_t{32} << 20;  // what NVIDIA suggests for Hopper

cudaDataType_t cuda_type(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return CUDA_R_32F;
    case DType::bf16:
      return CUDA_R_16BF;
    case DType::f16:
      return CUDA_R_16F;
    default:
      break;
  }
  DTRAIN_THROW("cuda gemm: dtype ", dtype_name(dtype), " is not supported (f32, bf16, f16 are)");
}

// Read on every call, so a test can compare both paths in one process.
bool force_fallback() {
  const char* v = std::getenv("DTRAIN_GEMM_FALLBACK");
  return v != nullptr && std::strcmp(v, "1") == 0;
}

// The safety net: a plain GEMM (one thread per output element, f32
// accumulation) for shapes cuBLASLt declines, and for DTRAIN_GEMM_FALLBACK=1,
// which gives an independent check of the cuBLASLt path on a GPU. Slow.
template <typename TIn, typename TOut>
__global__ void fallback_gemm_kernel(TOut* out, const TIn* a, const TIn* b, const TOut* bias, int64_t M, int64_t N,
                                     int64_t K, bool trans_a, bool trans_b, int64_t stride_a, int64_t stride_b,
                                     int64_t stride_out, float alpha, float beta) {
  const int64_t n = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t m = blockIdx.y * static_cast<int64_t>(blockDim.y) + threadIdx.y;
  if (m >= M || n >= N) return;
  const TIn* ab = a + blockIdx.z * stride_a;
  const TIn* bb = b + blockIdx.z * stride_b;
  float acc = 0.0f;
  for (int64_t k = 0; k < K; ++k) {
    const float av = load(trans_a ? ab[k * M + m] : ab[m * K + k]);
    const float bv = load(trans_b ? bb[n * K + k] : bb[k * N + n]);
    acc += av * bv;
  }
  TOut* o = out + blockIdx.z * stride_out + m * N + n;
  float v = alpha * acc;
  if (beta != 0.0f) v += beta * load(*o);
  if (bias != nullptr) v += load(bias[n]);
  *o = store<TOut>(v);
}

template <typename TIn, typename TOut>
void launch_fallback(const GemmArgs& g, cudaStream_t stream) {
  DTRAIN_CHECK(g.batch <= 65535 && (g.m + 7) / 8 <= 65535, "fallback GEMM: batch ", g.batch, " or M ", g.m,
               " too large for its grid");
  const dim3 threads(32, 8);
  const dim3 blocks(static_cast<unsigned>((g.n + 31) / 32), static_cast<unsigned>((g.m + 7) / 8),
                    static_cast<unsigned>(g.batch));
  fallback_gemm_kernel<TIn, TOut>
      <<<blocks, threads, 0, stream>>>(static_cast<TOut*>(g.out), static_cast<const TIn*>(g.a),
                                       static_cast<const TIn*>(g.b), static_cast<const TOut*>(g.bias), g.m, g.n, g.k,
                                       g.trans_a, g.trans_b, g.stride_a, g.stride_b, g.stride_out, g.alpha, g.beta);
  DTRAIN_LAUNCH_CHECK();
}

void run_fallback(const GemmArgs& g, cudaStream_t stream) {
  dispatch_float(g.in_type, "gemm", [&](auto in_tag) {
    using TIn = decltype(in_tag);
    if (g.out_type == DType::f32) {
      launch_fallback<TIn, float>(g, stream);
    } else {
      DTRAIN_CHECK(g.out_type == g.in_type, "cuda gemm: output ", dtype_name(g.out_type), " for ",
                   dtype_name(g.in_type), " inputs is not supported (same dtype or f32 are)");
      launch_fallback<TIn, TIn>(g, stream);
    }
  });
}

bool allow_tf32() {
  static const bool allow = [] {
    const char* v = std::getenv("DTRAIN_ALLOW_TF32");
    return v != nullptr && std::strcmp(v, "1") == 0;
  }();
  return allow;
}

// Largest power of two (<= 256) dividing every address the GEMM touches.
int64_t alignment_of(const void* p, int64_t stride_elems, size_t elem_size, int64_t batch) {
  uint64_t bits = reinterpret_cast<uintptr_t>(p) | 256u;
  if (batch > 1 && stride_elems != 0) bits |= static_cast<uint64_t>(stride_elems) * elem_size;
  return static_cast<int64_t>(bits & (~bits + 1));
}

// Everything that selects a plan.
using PlanKey = std::array<int64_t, 19>;

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool fallback = false;  // run fallback_gemm_kernel instead of cuBLASLt
  std::mutex mutex;       // the bias pointer is set on the shared descriptor per call
  ~Plan() {
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
};

struct DeviceGemmState {
  cublasLtHandle_t handle = nullptr;
  std::map<PlanKey, std::unique_ptr<Plan>> plans;
  std::map<cudaStream_t, void*> workspaces;
};

std::mutex& state_mutex() {
  static std::mutex m;
  return m;
}

// Per device; leaked on purpose (handles must outlive static tensors' last ops).
DeviceGemmState& state_for(int device) {
  static auto* states = new std::map<int, DeviceGemmState>();
  DeviceGemmState& s = (*states)[device];
  if (s.handle == nullptr) DTRAIN_CUBLAS_CHECK(cublasLtCreate(&s.handle));
  return s;
}

cublasLtMatrixLayout_t make_layout(cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld, int64_t batch,
                                   int64_t stride) {
  cublasLtMatrixLayout_t layout = nullptr;
  DTRAIN_CUBLAS_CHECK(
      cublasLtMatrixLayoutCreate(&layout, type, static_cast<uint64_t>(rows), static_cast<uint64_t>(cols), ld));
  if (batch > 1) {
    const int32_t count = static_cast<int32_t>(batch);
    DTRAIN_CUBLAS_CHECK(
        cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
    DTRAIN_CUBLAS_CHECK(
        cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)));
  }
  return layout;
}

// The cuBLASLt epilogue for a call: the bias (a plain linear), GELU with its
// input kept (aux), or GELU's gradient from aux with the bias gradient.
cublasLtEpilogue_t epilogue_of(const GemmArgs& g) {
  switch (g.epilogue) {
    case GemmEpilogue::gelu_aux:
      return g.bias != nullptr ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX;
    case GemmEpilogue::dgelu_bgrad:
      return g.bgrad != nullptr ? CUBLASLT_EPILOGUE_DGELU_BGRAD : CUBLASLT_EPILOGUE_DGELU;
    case GemmEpilogue::none:
      break;
  }
  return g.bias != nullptr ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
}

// What CUBLASLT_MATMUL_DESC_BIAS_POINTER holds: the bias read, or (dgelu_bgrad) the bias gradient written.
const void* epilogue_vector(const GemmArgs& g) {
  return g.epilogue == GemmEpilogue::dgelu_bgrad ? g.bgrad : g.bias;
}

void set_epilogue_pointers(cublasLtMatmulDesc_t desc, const GemmArgs& g) {
  const void* vector = epilogue_vector(g);
  if (vector != nullptr) {
    DTRAIN_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &vector, sizeof(vector)));
  }
  if (g.epilogue != GemmEpilogue::none) {
    DTRAIN_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &g.aux, sizeof(g.aux)));
  }
}

std::unique_ptr<Plan> make_plan(cublasLtHandle_t handle, const GemmArgs& g, int64_t align_a, int64_t align_b,
                                int64_t align_c) {
  auto plan = std::make_unique<Plan>();
  const cublasComputeType_t compute =
      g.in_type == DType::f32 && allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  DTRAIN_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->desc, compute, CUDA_R_32F));
  // Column-major view: cuBLAS A = our b, cuBLAS B = our a (see the file comment).
  const cublasOperation_t op_a = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  DTRAIN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)));
  DTRAIN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)));
  const cublasLtEpilogue_t epilogue = epilogue_of(g);
  if (epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
    DTRAIN_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
  }
  const void* vector = epilogue_vector(g);
  if (vector != nullptr) {
    const cudaDataType_t bias_type = cuda_type(g.out_type);
    DTRAIN_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof(bias_type)));
  }
  if (g.epilogue != GemmEpilogue::none) {
    // The heuristic reads these pointers' alignment (part of the plan key), so they are set before it.
    set_epilogue_pointers(plan->desc, g);
    const int64_t aux_ld = g.n;  // row-major aux [M, N] is the column-major N x M, leading dimension N
    DTRAIN_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &aux_ld, sizeof(aux_ld)));
  }
  const int64_t M = g.m, N = g.n, K = g.k;
  const cudaDataType_t in = cuda_type(g.in_type), out = cuda_type(g.out_type);
  // cuBLAS A (our b): stored N x K (ld N) when not transposed, K x N (ld K) when transposed.
  plan->a = g.trans_b ? make_layout(in, K, N, K, g.batch, g.stride_b) : make_layout(in, N, K, N, g.batch, g.stride_b);
  // cuBLAS B (our a): stored K x M (ld K), or M x K (ld M) when transposed.
  plan->b = g.trans_a ? make_layout(in, M, K, M, g.batch, g.stride_a) : make_layout(in, K, M, K, g.batch, g.stride_a);
  plan->c = make_layout(out, N, M, N, g.batch, g.stride_out);

  cublasLtMatmulPreference_t pref = nullptr;
  DTRAIN_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  struct PrefGuard {
    cublasLtMatmulPreference_t p;
    ~PrefGuard() { cublasLtMatmulPreferenceDestroy(p); }
  } pref_guard{pref};
  const uint64_t workspace = kWorkspaceBytes;
  DTRAIN_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace,
                                                           sizeof(workspace)));
  const uint32_t al_a = static_cast<uint32_t>(align_b), al_b = static_cast<uint32_t>(align_a),
                 al_c = static_cast<uint32_t>(align_c);
  DTRAIN_CUBLAS_CHECK(
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof(al_a)));
  DTRAIN_CUBLAS_CHECK(
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof(al_b)));
  DTRAIN_CUBLAS_CHECK(
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof(al_c)));
  DTRAIN_CUBLAS_CHECK(
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, sizeof(al_c)));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t status =
      cublasLtMatmulAlgoGetHeuristic(handle, plan->desc, plan->a, plan->b, plan->c, plan->c, pref, 1, &result, &found);
  if (status == CUBLAS_STATUS_NOT_SUPPORTED ||
      (status == CUBLAS_STATUS_SUCCESS && (found == 0 || result.state != CUBLAS_STATUS_SUCCESS))) {
    plan->fallback = true;  // no cuBLASLt kernel for this shape/alignment: use the simple one
    return plan;
  }
  DTRAIN_CUBLAS_CHECK(status);
  plan->algo = result.algo;
  return plan;
}

// Queues g on cuBLASLt and returns true, or returns false with nothing queued
// when cuBLASLt has no kernel for it (the plan remembers, so later calls skip it).
bool launch_cublaslt(const GemmArgs& g, cudaStream_t stream, int device) {
  const size_t in_size = dtype_size(g.in_type), out_size = dtype_size(g.out_type);
  const int64_t align_a = alignment_of(g.a, g.stride_a, in_size, g.batch);
  const int64_t align_b = alignment_of(g.b, g.stride_b, in_size, g.batch);
  const int64_t align_c = alignment_of(g.out, g.stride_out, out_size, g.batch);
  // The epilogue's own pointers (aux, bias gradient): the smallest alignment of either.
  const int64_t align_epilogue =
      g.epilogue == GemmEpilogue::none
          ? 0
          : std::min(alignment_of(g.aux, 0, out_size, 1),
                     g.bgrad != nullptr ? alignment_of(g.bgrad, 0, out_size, 1) : int64_t{256});
  const PlanKey key{static_cast<int64_t>(g.in_type),
                    static_cast<int64_t>(g.out_type),
                    g.trans_a,
                    g.trans_b,
                    g.m,
                    g.n,
                    g.k,
                    g.batch,
                    g.stride_a,
                    g.stride_b,
                    g.stride_out,
                    g.bias != nullptr,
                    align_a,
                    align_b,
                    align_c,
                    allow_tf32(),
                    static_cast<int64_t>(g.epilogue),
                    g.bgrad != nullptr,
                    align_epilogue};
  Plan* plan = nullptr;
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  {
    std::lock_guard<std::mutex> lock(state_mutex());
    DeviceGemmState& s = state_for(device);
    handle = s.handle;
    auto& slot = s.plans[key];
    if (!slot) slot = make_plan(s.handle, g, align_a, align_b, align_c);
    plan = slot.get();
    void*& ws = s.workspaces[stream];
    if (ws == nullptr) DTRAIN_CUDA_CHECK(cudaMalloc(&ws, kWorkspaceBytes));  // once per stream, never freed
    workspace = ws;
  }
  std::lock_guard<std::mutex> lock(plan->mutex);
  if (plan->fallback) return false;
  if (g.epilogue != GemmEpilogue::none) {
    set_epilogue_pointers(plan->desc, g);
  } else if (g.bias != nullptr) {
    DTRAIN_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g.bias, sizeof(g.bias)));
  }
  const cublasStatus_t status =
      cublasLtMatmul(handle, plan->desc, &g.alpha, g.b, plan->a, g.a, plan->b, &g.beta, g.out, plan->c, g.out, plan->c,
                     &plan->algo, workspace, kWorkspaceBytes, stream);
  if (status == CUBLAS_STATUS_NOT_SUPPORTED) {
    plan->fallback = true;  // rejected at launch (nothing was queued): remember
    return false;
  }
  DTRAIN_CUBLAS_CHECK(status);
  return true;
}

}  // namespace

void gemm(const GemmArgs& g, cudaStream_t stream, int device) {
  DTRAIN_CHECK(g.epilogue == GemmEpilogue::none, "cuda gemm: GELU epilogues go through gemm_with_epilogue");
  if (g.m == 0 || g.n == 0 || g.batch == 0) return;
  const size_t out_size = dtype_size(g.out_type);
  if (g.k == 0) {
    // Empty inner dimension (cuBLAS may reject it): the product is zero.
    if (g.beta == 1.0f && g.bias == nullptr) return;
    DTRAIN_CHECK(g.bias == nullptr && g.beta == 0.0f,
                 "cuda gemm: K == 0 is only supported with beta 0 or 1 and no bias");
    for (int64_t i = 0; i < g.batch; ++i) {
      DTRAIN_CUDA_CHECK(cudaMemsetAsync(static_cast<char*>(g.out) + i * g.stride_out * out_size, 0,
                                        static_cast<size_t>(g.m * g.n) * out_size, stream));
    }
    return;
  }
  if (force_fallback() || !launch_cublaslt(g, stream, device)) run_fallback(g, stream);
}

bool gemm_with_epilogue(const GemmArgs& g, cudaStream_t stream, int device) {
  DTRAIN_CHECK(
      g.epilogue != GemmEpilogue::none && g.aux != nullptr && g.batch == 1 && g.alpha == 1.0f && g.beta == 0.0f,
      "cuda gemm_with_epilogue: needs a GELU epilogue, its aux matrix, batch 1, alpha 1 and beta 0");
  if (g.m == 0 || g.n == 0 || g.k == 0 || g.n % 8 != 0 || force_fallback()) return false;
  return launch_cublaslt(g, stream, device);
}

}  // namespace dtrain::cuda
