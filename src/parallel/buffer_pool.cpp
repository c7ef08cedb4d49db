#include "parallel/buffer_pool.h"

namespace dtrain::parallel::detail {

Tensor BufferPool::take(int64_t numel, DType dtype) {
  for (size_t i = 0; i < free_.size(); ++i) {
    if (free_[i].numel() == numel && free_[i].dtype() == dtype) {
      Tensor t = free_[i];
      free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(i));
      return t;
    }
  }
  Tensor t = Tensor::empty({numel}, dtype, device_);
  footprint_ += static_cast<int64_t>(t.nbytes());
  return t;
}

void BufferPool::give(Tensor buffer) {
  if (buffer.defined()) free_.push_back(std::move(buffer));
}

}  // namespace dtrain::parallel::detail
