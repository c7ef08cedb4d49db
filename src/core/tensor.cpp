#include "dtrain/tensor.h"

#include <cstring>
#include <sstream>

#include "dtrain/allocator.h"

#ifdef DTRAIN_WITH_CUDA
#include "core/cuda_caching_allocator.h"
#include "core/cuda_check.h"
#include "dtrain/stream.h"
#endif

namespace dtrain {

std::string shape_str(const Shape& shape) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    DTRAIN_CHECK(d >= 0, "shape ", shape_str(shape), " has a negative dimension");
    DTRAIN_CHECK(d == 0 || n <= INT64_MAX / d, "shape ", shape_str(shape), " has too many elements");
    n *= d;
  }
  return n;
}

// ---- Storage ---------------------------------------------------------------

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  allocator_ = &allocator_for(device_);
  data_ = allocator_->allocate(nbytes_);
}

Storage::Storage(void* data, size_t nbytes, Device device, std::function<void(void*)> deleter)
    : data_(data), nbytes_(nbytes), device_(device), owned_(false), deleter_(std::move(deleter)) {}

Storage::~Storage() {
  if (owned_) {
    allocator_->deallocate(data_, nbytes_);
  } else if (deleter_) {
    deleter_(data_);
  }
}

// ---- Tensor ----------------------------------------------------------------

Tensor::Tensor(std::shared_ptr<Storage> storage, size_t offset, Shape shape, DType dtype)
    : storage_(std::move(storage)), offset_(offset), shape_(std::move(shape)), dtype_(dtype) {
  numel_ = shape_numel(shape_);
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  const int64_t n = shape_numel(shape);
  auto storage = std::make_shared<Storage>(static_cast<size_t>(n) * dtype_size(dtype), device);
  return Tensor(std::move(storage), 0, shape, dtype);
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.zero_();
  return t;
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}

Tensor Tensor::from_blob(void* data, const Shape& shape, DType dtype, Device device,
                         std::function<void(void*)> deleter) {
  const int64_t n = shape_numel(shape);
  DTRAIN_CHECK(data != nullptr || n == 0, "from_blob: data pointer is null for shape ", shape_str(shape));
  auto storage =
      std::make_shared<Storage>(data, static_cast<size_t>(n) * dtype_size(dtype), device, std::move(deleter));
  return Tensor(std::move(storage), 0, shape, dtype);
}

Tensor Tensor::from_vector(const std::vector<float>& values, const Shape& shape, DType dtype) {
  Tensor t = empty(shape, dtype);
  DTRAIN_CHECK(static_cast<int64_t>(values.size()) == t.numel(), "from_vector: ", values.size(),
               " values given for shape ", shape_str(shape), " (", t.numel(), " elements)");
  for (int64_t i = 0; i < t.numel(); ++i) t.set_item(i, values[i]);
  return t;
}

int64_t Tensor::size(int64_t d) const {
  const int64_t nd = dim();
  const int64_t index = d < 0 ? d + nd : d;
  DTRAIN_CHECK(index >= 0 && index < nd, "dimension ", d, " is out of range for a tensor of shape ", shape_str(shape_));
  return shape_[index];
}

Device Tensor::device() const {
  DTRAIN_CHECK(defined(), "device() called on an undefined tensor");
  return storage_->device();
}

void* Tensor::data_ptr() const {
  if (!defined()) return nullptr;
  return static_cast<char*>(storage_->data()) + offset_;
}

Tensor Tensor::narrow(int64_t start, int64_t length) const {
  DTRAIN_CHECK(defined() && dim() >= 1, "narrow needs a tensor with at least one dimension, got ", describe());
  DTRAIN_CHECK(start >= 0 && length >= 0 && start + length <= shape_[0], "narrow(", start, ", ", length,
               ") is out of range for leading dimension ", shape_[0], " of ", describe());
  const int64_t row = shape_numel(Shape(shape_.begin() + 1, shape_.end()));
  Shape shape = shape_;
  shape[0] = length;
  return Tensor(storage_, offset_ + static_cast<size_t>(start * row) * dtype_size(dtype_), shape, dtype_);
}

Tensor Tensor::reshape(const Shape& shape) const {
  DTRAIN_CHECK(defined(), "reshape called on an undefined tensor");
  Shape resolved = shape;
  int64_t known = 1;
  int infer = -1;
  for (size_t i = 0; i < resolved.size(); ++i) {
    if (resolved[i] == -1) {
      DTRAIN_CHECK(infer < 0, "reshape to ", shape_str(shape), ": only one dimension may be -1");
      infer = static_cast<int>(i);
    } else {
      DTRAIN_CHECK(resolved[i] >= 0, "reshape to ", shape_str(shape), ": negative dimension");
      known *= resolved[i];
    }
  }
  if (infer >= 0) {
    DTRAIN_CHECK(known != 0 && numel_ % known == 0, "reshape of ", describe(), " to ", shape_str(shape),
                 ": cannot infer the -1 dimension");
    resolved[infer] = numel_ / known;
  }
  DTRAIN_CHECK(shape_numel(resolved) == numel_, "reshape of ", describe(), " to ", shape_str(shape),
               " changes the number of elements");
  return Tensor(storage_, offset_, resolved, dtype_);
}

Tensor& Tensor::copy_(const Tensor& src) {
  DTRAIN_CHECK(defined() && src.defined(), "copy_ needs two defined tensors");
  DTRAIN_CHECK(src.dtype_ == dtype_, "copy_: source is ", dtype_name(src.dtype_), " but destination is ",
               dtype_name(dtype_), "; use ops::cast to convert");
  DTRAIN_CHECK(src.numel_ == numel_, "copy_: source ", src.describe(), " and destination ", describe(),
               " hold different numbers of elements");
  if (nbytes() == 0 || data_ptr() == src.data_ptr()) return *this;
  if (is_cpu() && src.is_cpu()) {
    std::memmove(data_ptr(), src.data_ptr(), nbytes());
    return *this;
  }
#ifdef DTRAIN_WITH_CUDA
  // Copies run on the current stream of the CUDA side, in order with the ops
  // queued there. A copy that involves the host, or two devices, waits for
  // its stream before returning, so the caller may read or reuse host memory
  // (and either device block) at once; device-to-device copies on one device
  // stay asynchronous.
  const Device cuda_device = is_cuda() ? device() : src.device();
  CudaDeviceGuard guard(cuda_device.index());
  const Stream stream = current_stream(cuda_device);
  const auto native = static_cast<cudaStream_t>(stream.native_handle());
  const bool cross_device = is_cuda() && src.is_cuda() && device() != src.device();
  if (cross_device) stream.wait(current_stream(src.device()));  // src's producer work first
  DTRAIN_CUDA_CHECK(cudaMemcpyAsync(data_ptr(), src.data_ptr(), nbytes(), cudaMemcpyDefault, native));
  if (is_cpu() || src.is_cpu() || cross_device) stream.synchronize();
  return *this;
#else
  DTRAIN_THROW("copy_ between ", src.device().str(), " and ", device().str(), " needs a CUDA build");
#endif
}

Tensor& Tensor::zero_() {
  if (nbytes() == 0) return *this;
  if (is_cpu()) {
    std::memset(data_ptr(), 0, nbytes());
    return *this;
  }
#ifdef DTRAIN_WITH_CUDA
  CudaDeviceGuard guard(device().index());
  DTRAIN_CUDA_CHECK(
      cudaMemsetAsync(data_ptr(), 0, nbytes(), static_cast<cudaStream_t>(current_stream(device()).native_handle())));
  return *this;
#else
  DTRAIN_THROW("zero_ on ", device().str(), " needs a CUDA build");
#endif
}

Tensor& Tensor::fill_(double value) {
  if (value == 0.0) return zero_();
  if (is_cpu()) {
    for (int64_t i = 0; i < numel_; ++i) set_item(i, value);
    return *this;
  }
  copy_(Tensor::full(shape_, value, dtype_, Device::cpu()));
  return *this;
}

Tensor Tensor::to(const Device& device) const {
  DTRAIN_CHECK(defined(), "to() called on an undefined tensor");
  if (device == this->device()) return *this;
  Tensor out = empty(shape_, dtype_, device);
  out.copy_(*this);
  return out;
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape_, dtype_, device());
  out.copy_(*this);
  return out;
}

double Tensor::item(int64_t i) const {
  DTRAIN_CHECK(defined() && is_cpu(), "item() needs a CPU tensor, got ", describe(), "; call .to(cpu) first");
  DTRAIN_CHECK(i >= 0 && i < numel_, "item(", i, ") is out of range for ", describe());
  const void* p = data_ptr();
  switch (dtype_) {
    case DType::f32:
      return static_cast<const float*>(p)[i];
    case DType::bf16:
      return bf16_to_float(static_cast<const uint16_t*>(p)[i]);
    case DType::f16:
      return f16_to_float(static_cast<const uint16_t*>(p)[i]);
    case DType::i32:
      return static_cast<const int32_t*>(p)[i];
    case DType::i64:
      return static_cast<double>(static_cast<const int64_t*>(p)[i]);
    case DType::u8:
      return static_cast<const uint8_t*>(p)[i];
    case DType::u16:
      return static_cast<const uint16_t*>(p)[i];
  }
  return 0.0;
}

void Tensor::set_item(int64_t i, double v) {
  DTRAIN_CHECK(defined() && is_cpu(), "set_item() needs a CPU tensor, got ", describe());
  DTRAIN_CHECK(i >= 0 && i < numel_, "set_item(", i, ") is out of range for ", describe());
  void* p = data_ptr();
  switch (dtype_) {
    case DType::f32:
      static_cast<float*>(p)[i] = static_cast<float>(v);
      break;
    case DType::bf16:
      static_cast<uint16_t*>(p)[i] = float_to_bf16(static_cast<float>(v));
      break;
    case DType::f16:
      static_cast<uint16_t*>(p)[i] = float_to_f16(static_cast<float>(v));
      break;
    case DType::i32:
      static_cast<int32_t*>(p)[i] = static_cast<int32_t>(v);
      break;
    case DType::i64:
      static_cast<int64_t*>(p)[i] = static_cast<int64_t>(v);
      break;
    case DType::u8:
      static_cast<uint8_t*>(p)[i] = static_cast<uint8_t>(v);
      break;
    case DType::u16:
      static_cast<uint16_t*>(p)[i] = static_cast<uint16_t>(v);
      break;
  }
}

std::vector<float> Tensor::to_vector() const {
  const Tensor host = to(Device::cpu());
  std::vector<float> out(static_cast<size_t>(numel_));
  for (int64_t i = 0; i < numel_; ++i) out[i] = static_cast<float>(host.item(i));
  return out;
}

bool Tensor::overlaps(const Tensor& other) const {
  if (!defined() || !other.defined() || nbytes() == 0 || other.nbytes() == 0) return false;
  if (device() != other.device()) return false;
  const auto a = reinterpret_cast<uintptr_t>(data_ptr());
  const auto b = reinterpret_cast<uintptr_t>(other.data_ptr());
  return a < b + other.nbytes() && b < a + nbytes();
}

std::string Tensor::describe() const {
  if (!defined()) return "undefined";
  return std::string(dtype_name(dtype_)) + shape_str(shape_) + " on " + device().str();
}

}  // namespace dtrain
