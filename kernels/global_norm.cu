// Squared global L2 norm over many tensors: one launch of per-block partial
// sums (multi_tensor.cuh), then one block adds the partials in a fixed order
// (deterministic, no atomics). f32 accumulation.
#include "common.cuh"
#include "multi_tensor.cuh"

namespace dtrain::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kChunk = kThreads * 16;

__global__ void norm_partial_kernel(float* partial, const ReadEntry* table, int count) {
  __shared__ float shared[32];
  const ReadEntry e = table[find_entry(table, count, blockIdx.x)];
  const int64_t begin = (blockIdx.x - e.first_block) * kChunk;
  const int64_t end = min(e.n, begin + kChunk);
  float acc = 0.0f;
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    const float v = load_typed(e.data, e.type, i);
    acc += v * v;
  }
  acc = block_sum(acc, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

__global__ void norm_finish_kernel(float* out, const float* partial, int64_t count) {
  __shared__ float shared[32];
  float acc = 0.0f;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) acc += partial[i];
  acc = block_sum(acc, shared);
  if (threadIdx.x == 0) out[0] = acc;
}

}  // namespace

void global_norm_squared(Tensor& out, const std::vector<Tensor>& tensors) {
  const OpContext ctx(out);
  int64_t blocks = 0;
  const std::vector<ReadEntry> table = read_table(tensors, kChunk, blocks);
  if (table.empty()) {
    DTRAIN_CUDA_CHECK(cudaMemsetAsync(out.data_ptr(), 0, sizeof(float), ctx.stream()));
    return;
  }
  DTRAIN_CHECK(blocks <= INT32_MAX, "cuda::global_norm_squared: ", blocks, " blocks exceed one launch");
  // Leaked: its device tables must not be freed during static destruction.
  static auto* cache = new DeviceTableCache();
  const ReadEntry* device_table = cache->upload(ctx, table);
  Tensor partial = ctx.scratch({blocks});
  norm_partial_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, ctx.stream()>>>(ptr<float>(partial), device_table,
                                                                                    static_cast<int>(table.size()));
  DTRAIN_LAUNCH_CHECK();
  norm_finish_kernel<<<1, 1024, 0, ctx.stream()>>>(ptr<float>(out), ptr<float>(partial), blocks);
  DTRAIN_LAUNCH_CHECK();
}

}  // namespace dtrain::cuda
