// AdamW over many tensors in one launch (multi_tensor.cuh): every block owns
// kChunk elements of one tensor; f32 master weights and moments, gradients
// f32/bf16/f16, optional low-precision copy of the updated weights.
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
};

struct AdamWScalars {
  float lr, beta1, beta2, eps, grad_scale, bias_correction1, bias_correction2;
};

__global__ void adamw_kernel(const AdamWEntry* table, int count, AdamWScalars s) {
  const AdamWEntry e = table[find_entry(table, count, blockIdx.x)];
  const int64_t begin = (blockIdx.x - e.first_block) * kChunk;
  const int64_t end = min(e.n, begin + kChunk);
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    const float g = load_typed(e.grad, e.grad_type, i) * s.grad_scale;
    const float m = s.beta1 * e.exp_avg[i] + (1.0f - s.beta1) * g;
    const float v = s.beta2 * e.exp_avg_sq[i] + (1.0f - s.beta2) * g * g;
    e.exp_avg[i] = m;
    e.exp_avg_sq[i] = v;
    const float m_hat = m / s.bias_correction1;
    const float v_hat = v / s.bias_correction2;
    float p = e.param[i];
    p -= s.lr * (m_hat / (sqrtf(v_hat) + s.eps) + e.weight_decay * p);
    e.param[i] = p;
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
  // Computed as the CPU op does, so both round the same way.
  s.bias_correction1 = 1.0f - static_cast<float>(std::pow(static_cast<double>(config.beta1),
                                                          static_cast<double>(config.step)));
  s.bias_correction2 = 1.0f - static_cast<float>(std::pow(static_cast<double>(config.beta2),
                                                          static_cast<double>(config.step)));
  adamw_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, ctx.stream()>>>(device_table,
                                                                             static_cast<int>(table.size()), s);
  DTRAIN_LAUNCH_CHECK();
}

}  // namespace dtrain::cuda
