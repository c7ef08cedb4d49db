// Internal: helpers for ops that process many tensors in one launch (AdamW,
// global norm, non-finite check): a device-side table of per-tensor entries, each owning a
// contiguous range of blocks, and a block -> entry lookup.
//
// The table is uploaded once and reused while the caller passes the same
// tensors (the usual case: parameters, gradients and optimizer states persist
// across steps), so a warm step copies nothing from the host.
#pragma once

#include <cstring>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "common.cuh"

namespace dtrain::cuda {

// Element type codes stored in tables (kernels branch on them per entry).
enum : int { kTypeF32 = 0, kTypeBF16 = 1, kTypeF16 = 2 };
inline int type_code(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return kTypeF32;
    case DType::bf16:
      return kTypeBF16;
    case DType::f16:
      return kTypeF16;
    default:
      break;
  }
  DTRAIN_THROW("multi-tensor op: dtype ", dtype_name(dtype), " is not supported (f32, bf16, f16 are)");
}
__device__ __forceinline__ float load_typed(const void* p, int type, int64_t i) {
  if (type == kTypeBF16) return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
  if (type == kTypeF16) return __half2float(static_cast<const __half*>(p)[i]);
  return static_cast<const float*>(p)[i];
}
__device__ __forceinline__ void store_typed(void* p, int type, int64_t i, float v) {
  if (type == kTypeBF16) {
    static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
  } else if (type == kTypeF16) {
    static_cast<__half*>(p)[i] = __float2half_rn(v);
  } else {
    static_cast<float*>(p)[i] = v;
  }
}

// Index of the entry whose block range holds `block` (entries sorted by first_block).
template <typename Entry>
__device__ __forceinline__ int find_entry(const Entry* table, int count, int64_t block) {
  int lo = 0, hi = count - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (table[mid].first_block <= block) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

// Entry for ops that only read their tensors (global norm, non-finite check).
struct ReadEntry {
  const void* data;
  int64_t n;
  int64_t first_block;
  int type;
  int unused;  // no implicit padding: the table cache compares bytes
};
static_assert(sizeof(ReadEntry) == 32, "ReadEntry must have no padding bytes");

// One entry per non-empty tensor, each owning ceil(numel / chunk) blocks; the
// total block count goes to `blocks`.
inline std::vector<ReadEntry> read_table(const std::vector<Tensor>& tensors, int64_t chunk, int64_t& blocks) {
  std::vector<ReadEntry> table;
  blocks = 0;
  for (const Tensor& t : tensors) {
    if (t.numel() == 0) continue;
    table.push_back(ReadEntry{t.data_ptr(), t.numel(), blocks, type_code(t.dtype()), 0});
    blocks += (t.numel() + chunk - 1) / chunk;
  }
  return table;
}

// Keeps the last table uploaded per (device, stream); returns its device copy.
// Entries are compared byte for byte, so entry structs must have no padding.
class DeviceTableCache {
 public:
  template <typename Entry>
  const Entry* upload(const OpContext& ctx, const std::vector<Entry>& table) {
    const size_t nbytes = table.size() * sizeof(Entry);
    std::lock_guard<std::mutex> lock(mutex_);
    Slot& slot = slots_[{ctx.device().index(), ctx.stream()}];
    if (slot.host.size() != nbytes || std::memcmp(slot.host.data(), table.data(), nbytes) != 0) {
      slot.host.assign(reinterpret_cast<const char*>(table.data()),
                       reinterpret_cast<const char*>(table.data()) + nbytes);
      // A fresh block: the previous table may still be read by queued kernels.
      slot.device = ctx.scratch({static_cast<int64_t>(nbytes)}, DType::u8);
      // From pageable memory: returns once the bytes are staged, so `table` may go.
      DTRAIN_CUDA_CHECK(
          cudaMemcpyAsync(slot.device.data_ptr(), table.data(), nbytes, cudaMemcpyHostToDevice, ctx.stream()));
    }
    return static_cast<const Entry*>(slot.device.data_ptr());
  }

 private:
  struct Slot {
    std::vector<char> host;
    Tensor device;
  };
  std::mutex mutex_;
  std::map<std::pair<int, cudaStream_t>, Slot> slots_;
};

}  // namespace dtrain::cuda
