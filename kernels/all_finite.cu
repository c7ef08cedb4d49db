// all_finite: inf/nan detection for the dynamic loss scaler (src/optim/loss_scaler.cpp):
// one multi-tensor launch sets a device flag when any element is not finite,
// then the flag comes back to the host (the one sync the scaler needs).
#include "common.cuh"
#include "multi_tensor.cuh"

namespace dtrain::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kChunk = kThreads * 16;

__global__ void nonfinite_kernel(int* flag, const ReadEntry* table, int count) {
  const ReadEntry e = table[find_entry(table, count, blockIdx.x)];
  const int64_t begin = (blockIdx.x - e.first_block) * kChunk;
  const int64_t end = min(e.n, begin + kChunk);
  bool bad = false;
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) bad = bad || !isfinite(load_typed(e.data, e.type, i));
  if (__syncthreads_or(bad) && threadIdx.x == 0) *flag = 1;  // every writer writes the same value
}

}  // namespace

bool all_finite(const std::vector<Tensor>& tensors) {
  if (tensors.empty()) return true;
  const OpContext ctx(tensors.front());
  int64_t blocks = 0;
  const std::vector<ReadEntry> table = read_table(tensors, kChunk, blocks);
  if (table.empty()) return true;
  DTRAIN_CHECK(blocks <= INT32_MAX, "all_finite: ", blocks, " blocks exceed one launch");
  static auto* cache = new DeviceTableCache();  // leaked: see adamw.cu
  const ReadEntry* device_table = cache->upload(ctx, table);
  Tensor flag = ctx.scratch({1}, DType::i32);
  DTRAIN_CUDA_CHECK(cudaMemsetAsync(flag.data_ptr(), 0, sizeof(int), ctx.stream()));
  nonfinite_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, ctx.stream()>>>(ptr<int>(flag), device_table,
                                                                                 static_cast<int>(table.size()));
  DTRAIN_LAUNCH_CHECK();
  int host = 0;
  DTRAIN_CUDA_CHECK(cudaMemcpyAsync(&host, flag.data_ptr(), sizeof(int), cudaMemcpyDeviceToHost, ctx.stream()));
  DTRAIN_CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
  return host == 0;
}

}  // namespace dtrain::cuda
