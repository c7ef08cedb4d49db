// BufferPool: flat buffers the engine needs only for a while -- gathered
// ZeRO-3 units, bucket gradients of stages 2-3 -- are handed back here after
// use, and the next request of the same size and dtype reuses them, so a
// steady step neither allocates nor page-faults. A caller gives a buffer back
// only once no collective uses it any more. The bytes it ever allocated are
// what the memory ledger reports as communication buffers.
#pragma once

#include <cstdint>
#include <vector>

#include "dtrain/tensor.h"

namespace dtrain::parallel::detail {

class BufferPool {
 public:
  explicit BufferPool(Device device) : device_(device) {}

  // A flat [numel] buffer of `dtype` (contents undefined): a free one of that
  // size, else a new one.
  Tensor take(int64_t numel, DType dtype);
  // Returns a buffer for reuse (an undefined tensor is ignored).
  void give(Tensor buffer);

  // Bytes of every buffer this pool allocated (they all stay alive).
  int64_t footprint_bytes() const { return footprint_; }

 private:
  Device device_;
  std::vector<Tensor> free_;
  int64_t footprint_ = 0;
};

}  // namespace dtrain::parallel::detail
