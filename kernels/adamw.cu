// AdamW over many tensors in one launch (multi_tensor.cuh): every block owns
// kChunk elements of one tensor; f32 master weights and moments, gradients
// f32/bf16/f16, optional low-precision copy of the updated weights. The
// gradient multiplier may come from device memory (a clip coefficient), so
// a clipped step needs no device-to-host read.
#include <cmath>

#include "common.cuh"
#include "dtrain/ops.h"
#include "multi_tensor.cuh"

namespace dtrain::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kChunk = kThreads * 16;

struct AdamWEntry {
  float* param;
  const void* grad;
  float* exp_avg;
  float* exp_avg_sq;
  void* param_copy;  // nullptr when absent
  int64_t n;
  int64_t first_block;
  float weight_decay;
  int grad_type;
  int copy_type;
  int vec4;  // param and moments 16-byte aligned: 16-byte accesses (also: no implicit padding)
};
static_assert(sizeof(AdamWEntry) == 72, "AdamWEntry must have no padding bytes");

struct AdamWScalars {
  float lr, beta1, beta2, eps, grad_scale, bias_correction1, bias_correction2;
  const float* device_grad_scale;  // nullptr, or a [1] f32 that multiplies grad_scale (read on the device)
};

// One element's update (the CPU op's formula and order of operations).
__device__ __forceinline__ void adamw_update(float& p, float& m, float& v, float grad, float weight_decay,
                                             const AdamWScalars& s) {
  const float g = grad * s.grad_scale;
  m = s.beta1 * m + (1.0f - s.beta1) * g;
  v = s.beta2 * v + (1.0f - s.beta2) * g * g;
  const float m_hat = m / s.bias_correction1;
  const float v_hat = v / s.bias_correction2;
  p -= s.lr * (m_hat / (sqrtf(v_hat) + s.eps) + weight_decay * p);
}

__global__ void adamw_kernel(const AdamWEntry* table, int count, AdamWScalars s) {
  if (s.device_grad_scale != nullptr) s.grad_scale *= *s.device_grad_scale;  // as the CPU op: scale x element
  const AdamWEntry e = table[find_entry(table, count, blockIdx.x)];
  const int64_t begin = (blockIdx.x - e.first_block) * kChunk;  // a multiple of kChunk: keeps alignment
  const int64_t end = min(e.n, begin + kChunk);
  int64_t scalar_begin = begin;
  if (e.vec4) {
    // Groups of 4: param and moments as float4 (16-byte accesses); the
    // gradient and the copy element by element (still coalesced).
    const int64_t groups = (end - begin) / 4;
    for (int64_t q = threadIdx.x; q < groups; q += blockDim.x) {
      const int64_t i = begin + 4 * q;
      float4 p4 = *reinterpret_cast<const float4*>(e.param + i);
      float4 m4 = *reinterpret_cast<const float4*>(e.exp_avg + i);
      float4 v4 = *reinterpret_cast<const float4*>(e.exp_avg_sq + i);
      adamw_update(p4.x, m4.x, v4.x, load_typed(e.grad, e.grad_type, i + 0), e.weight_decay, s);
      adamw_update(p4.y, m4.y, v4.y, load_typed(e.grad, e.grad_type, i + 1), e.weight_decay, s);
      adamw_update(p4.z, m4.z, v4.z, load_typed(e.grad, e.grad_type, i + 2), e.weight_decay, s);
      adamw_update(p4.w, m4.w, v4.w, load_typed(e.grad, e.grad_type, i + 3), e.weight_decay, s);
      *reinterpret_cast<float4*>(e.param + i) = p4;
      *reinterpret_cast<float4*>(e.exp_avg + i) = m4;
      *reinterpret_cast<float4*>(e.exp_avg_sq + i) = v4;
      if (e.param_copy != nullptr) {
        store_typed(e.param_copy, e.copy_type, i + 0, p4.x);
        store_typed(e.param_copy, e.copy_type, i + 1, p4.y);
        store_typed(e.param_copy, e.copy_type, i + 2, p4.z);
        store_typed(e.param_copy, e.copy_type, i + 3, p4.w);
      }
    }
    scalar_begin = begin + 4 * groups;
  }
  for (int64_t i = scalar_begin + threadIdx.x; i < end; i += blockDim.x) {
    float p = e.param[i], m = e.exp_avg[i], v = e.exp_avg_sq[i];
    adamw_update(p, m, v, load_typed(e.grad, e.grad_type, i), e.weight_decay, s);
    e.param[i] = p;
    e.exp_avg[i] = m;
    e.exp_avg_sq[i] = v;
    if (e.param_copy != nullptr) store_typed(e.param_copy, e.copy_type, i, p);
  }
}

}  // namespace

void adamw_step(std::vector<ops::AdamWTensor>& tensors, const ops::AdamWConfig& config) {
  if (tensors.empty()) return;
  const OpContext ctx(tensors.front().param);
  std::vector<AdamWEntry> table;
  int64_t blocks = 0;
  for (auto& t : tensors) {
    const int64_t n = t.param.numel();
    if (n == 0) continue;
    AdamWEntry e{};
    e.param = ptr<float>(t.param);
    e.grad = t.grad.data_ptr();
    e.exp_avg = ptr<float>(t.exp_avg);
    e.exp_avg_sq = ptr<float>(t.exp_avg_sq);
    e.param_copy = t.param_copy.defined() ? t.param_copy.data_ptr() : nullptr;
    e.n = n;
    e.first_block = blocks;
    e.weight_decay = t.weight_decay;
    e.grad_type = type_code(t.grad.dtype());
    e.copy_type = t.param_copy.defined() ? type_code(t.param_copy.dtype()) : kTypeF32;
    e.vec4 = aligned16(e.param) && aligned16(e.exp_avg) && aligned16(e.exp_avg_sq) ? 1 : 0;
    table.push_back(e);
    blocks += (n + kChunk - 1) / kChunk;
  }
  if (table.empty()) return;
  DTRAIN_CHECK(blocks <= INT32_MAX, "cuda::adamw_step: ", blocks, " blocks exceed one launch");
  // Leaked: its device tables must not be freed during static destruction.
  static auto* cache = new DeviceTableCache();
  const AdamWEntry* device_table = cache->upload(ctx, table);
  AdamWScalars s{};
  s.lr = config.lr;
  s.beta1 = config.beta1;
  s.beta2 = config.beta2;
  s.eps = config.eps;
  s.grad_scale = config.grad_scale;
  s.device_grad_scale = config.device_grad_scale.defined() ? ptr<float>(config.device_grad_scale) : nullptr;
  // Computed as the CPU op does, so both round the same way.
  s.bias_correction1 =
      1.0f - static_cast<float>(std::pow(static_cast<double>(config.beta1), static_cast<double>(config.step)));
  s.bias_correction2 =
      1.0f - static_cast<float>(std::pow(static_cast<double>(config.beta2), static_cast<double>(config.step)));
  adamw_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, ctx.stream()>>>(device_table,
                                                                             static_cast<int>(table.size()), s);
  DTRAIN_LAUNCH_CHECK();
}

}  // namespace dtrain::cuda
