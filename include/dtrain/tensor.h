// Tensor: shared storage + byte offset + shape, always row-major contiguous.
//
// Copying a Tensor copies the handle, not the data (like torch.Tensor).
// Views (narrow along the leading dimension, reshape) share the storage.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "dtrain/device.h"
#include "dtrain/dtype.h"
#include "dtrain/error.h"

namespace dtrain {

class Allocator;
using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& shape);
// Product of the dimensions (1 for a scalar shape {}); throws on negatives.
int64_t shape_numel(const Shape& shape);

// A block of device memory. Owns it (through the device allocator) unless it
// was made from a caller's pointer, in which case `deleter` (may be empty)
// runs when the last tensor using it goes away.
class Storage {
 public:
  Storage(size_t nbytes, Device device);
  Storage(void* data, size_t nbytes, Device device, std::function<void(void*)> deleter);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  const Device& device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  Allocator* allocator_ = nullptr;  // set when owned; looked up once, not per free
  bool owned_ = true;
  std::function<void(void*)> deleter_;
};

class Tensor {
 public:
  Tensor() = default;  // undefined tensor: defined() == false

  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32, Device device = Device::cpu());
  // Wraps memory the caller owns, without copying. The memory must stay valid
  // while any tensor uses it; `deleter` (optional) runs when the last one goes.
  static Tensor from_blob(void* data, const Shape& shape, DType dtype, Device device = Device::cpu(),
                          std::function<void(void*)> deleter = {});
  // CPU tensor holding a copy of `values` (converted to dtype).
  static Tensor from_vector(const std::vector<float>& values, const Shape& shape, DType dtype = DType::f32);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int64_t dim() const { return static_cast<int64_t>(shape_.size()); }
  // Size of dimension d; negative d counts from the end.
  int64_t size(int64_t d) const;
  int64_t numel() const { return numel_; }
  size_t nbytes() const { return static_cast<size_t>(numel_) * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const;
  bool is_cpu() const { return device().is_cpu(); }
  bool is_cuda() const { return device().is_cuda(); }
  bool is_contiguous() const { return true; }  // every dtrain tensor is row-major contiguous

  void* data_ptr() const;
  // Typed pointer; throws if T does not match dtype().
  template <typename T>
  T* data() const {
    DTRAIN_CHECK(dtype_ == dtype_of<T>(), "tensor holds ", dtype_name(dtype_), " but was accessed as ",
                 dtype_name(dtype_of<T>()));
    return static_cast<T*>(data_ptr());
  }

  // Rows [start, start + length) of the leading dimension, as a view.
  Tensor narrow(int64_t start, int64_t length) const;
  // Same data, new shape (one dimension may be -1), as a view.
  Tensor reshape(const Shape& shape) const;
  // Flat view of all elements.
  Tensor flatten() const { return reshape({numel_}); }

  // Copies src into this tensor (same numel and dtype; any devices). Returns *this.
  Tensor& copy_(const Tensor& src);
  Tensor& zero_();
  Tensor& fill_(double value);
  // A new tensor with the same contents on `device` (this tensor if already there).
  Tensor to(const Device& device) const;
  Tensor clone() const;

  // Test helpers (CPU tensors; any dtype, converted through double).
  double item(int64_t flat_index) const;
  void set_item(int64_t flat_index, double value);
  std::vector<float> to_vector() const;

  // True if the two tensors' byte ranges overlap in memory.
  bool overlaps(const Tensor& other) const;
  bool shares_storage(const Tensor& other) const { return storage_ && storage_ == other.storage_; }
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  size_t storage_offset_bytes() const { return offset_; }
  // "f32[2, 3] on cpu" (or "undefined").
  std::string describe() const;

 private:
  Tensor(std::shared_ptr<Storage> storage, size_t offset, Shape shape, DType dtype);

  std::shared_ptr<Storage> storage_;
  size_t offset_ = 0;  // bytes from storage start
  Shape shape_;
  int64_t numel_ = 0;
  DType dtype_ = DType::f32;
};

}  // namespace dtrain
