// DLPack both ways: Tensor.__dlpack__ / __dlpack_device__ and
// dtrain.from_dlpack, so PyTorch, CuPy, JAX and NumPy arrays (CPU or CUDA)
// are shared without copies.
//
// Capsules: "dltensor_versioned" (DLPack 1.x) when the consumer passes
// max_version >= (1, 0), as NumPy 2 and PyTorch do (NumPy marks arrays from
// unversioned capsules read-only), otherwise the unversioned "dltensor". The
// Debian header (DLPack 0.6) predates the versioned struct, so its two
// definitions are written below from the DLPack 1.0 specification; DLTensor
// itself did not change. A consumed capsule is renamed "used_<name>", as the
// protocol says, and its deleter runs when the last dtrain tensor using the
// memory goes.
//
// Streams (CUDA, the protocol's rule): the consumer passes its stream to
// __dlpack__ and the producer makes its pending work visible to that stream.
// As producer dtrain waits on the host for its current stream of the device
// (stronger than an event wait, and needs no CUDA in this extension); as
// consumer it passes its current stream, so the producer does the ordering.
#include <dlpack/dlpack.h>

#include <string>

#include "bindings.h"
#include "dtrain/stream.h"
#include "dtrain/tensor.h"

namespace dtrain::python {
namespace {

constexpr const char* kCapsuleName = "dltensor";
constexpr const char* kUsedCapsuleName = "used_dltensor";
constexpr const char* kVersionedName = "dltensor_versioned";
constexpr const char* kUsedVersionedName = "used_dltensor_versioned";

// DLPack 1.0 (dlpack.h, "DLPackVersion" and "DLManagedTensorVersioned").
struct DLPackVersion {
  uint32_t major;
  uint32_t minor;
};
struct DLManagedTensorVersioned {
  DLPackVersion version;
  void* manager_ctx;
  void (*deleter)(DLManagedTensorVersioned* self);
  uint64_t flags;  // bit 0: read-only, bit 1: is a copy
  DLTensor dl_tensor;
};

DLDataType dl_dtype(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return {kDLFloat, 32, 1};
    case DType::bf16:
      return {kDLBfloat, 16, 1};
    case DType::f16:
      return {kDLFloat, 16, 1};
    case DType::i32:
      return {kDLInt, 32, 1};
    case DType::i64:
      return {kDLInt, 64, 1};
    case DType::u8:
      return {kDLUInt, 8, 1};
    case DType::u16:
      return {kDLUInt, 16, 1};
  }
  throw_type_error("unsupported dtype for DLPack");
}

DType dtype_from_dl(const DLDataType& t, const char* what) {
  if (t.lanes == 1) {
    if (t.code == kDLFloat && t.bits == 32) return DType::f32;
    if (t.code == kDLFloat && t.bits == 16) return DType::f16;
    if (t.code == kDLBfloat && t.bits == 16) return DType::bf16;
    if (t.code == kDLInt && t.bits == 32) return DType::i32;
    if (t.code == kDLInt && t.bits == 64) return DType::i64;
    if (t.code == kDLUInt && t.bits == 8) return DType::u8;
    if (t.code == kDLUInt && t.bits == 16) return DType::u16;
  }
  throw_type_error(std::string("argument '") + what + "': unsupported dtype (DLPack code " + std::to_string(t.code) +
                   ", " + std::to_string(t.bits) + " bits, " + std::to_string(t.lanes) +
                   " lanes); dtrain takes f32, bf16, f16, i32, i64, u8 and u16");
}

Device device_from_dl(const DLDevice& d, const char* what) {
  if (d.device_type == kDLCPU || d.device_type == kDLCUDAHost) return Device::cpu();
  if (d.device_type == kDLCUDA) return Device::cuda(d.device_id);
  throw_value_error(std::string("argument '") + what + "' is on the wrong device: DLPack device type " +
                    std::to_string(static_cast<int>(d.device_type)) +
                    "; dtrain takes CPU (1), CUDA (2) and pinned host (3) memory");
}

// What a capsule made by dtrain owns: a tensor handle (keeps the storage
// alive) plus the shape array the DLTensor points at.
struct ExportContext {
  Tensor tensor;
  std::vector<int64_t> shape;
  DLManagedTensor managed{};
  DLManagedTensorVersioned versioned{};
};

void delete_export(DLManagedTensor* managed) {
  delete static_cast<ExportContext*>(managed->manager_ctx);
}
void delete_export_versioned(DLManagedTensorVersioned* managed) {
  delete static_cast<ExportContext*>(managed->manager_ctx);
}

void capsule_destructor(PyObject* capsule) {
  // Unconsumed capsules still own their tensor; consumed ones were renamed.
  if (PyCapsule_IsValid(capsule, kCapsuleName)) {
    auto* managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule, kCapsuleName));
    if (managed != nullptr && managed->deleter != nullptr) managed->deleter(managed);
  } else if (PyCapsule_IsValid(capsule, kVersionedName)) {
    auto* managed = static_cast<DLManagedTensorVersioned*>(PyCapsule_GetPointer(capsule, kVersionedName));
    if (managed != nullptr && managed->deleter != nullptr) managed->deleter(managed);
  }
}

void order_for_consumer(const Tensor& t, py::handle stream) {
  if (!t.is_cuda()) return;
  if (!stream.is_none() && stream.cast<int64_t>() == -1) return;  // the consumer asked for no ordering
  const Stream current = current_stream(t.device());
  if (!stream.is_none() &&
      stream.cast<int64_t>() == static_cast<int64_t>(reinterpret_cast<intptr_t>(current.native_handle()))) {
    return;  // the same stream: already ordered
  }
  py::gil_scoped_release release;
  current.synchronize();
}

py::capsule to_dlpack(const Tensor& t, py::handle stream, bool versioned) {
  if (!t.defined()) throw_value_error("an undefined tensor cannot be exported through DLPack");
  order_for_consumer(t, stream);
  auto* ctx = new ExportContext{t, t.shape(), {}, {}};
  DLTensor& dl = versioned ? ctx->versioned.dl_tensor : ctx->managed.dl_tensor;
  dl.data = t.data_ptr();
  dl.device = t.is_cuda() ? DLDevice{kDLCUDA, t.device().index()} : DLDevice{kDLCPU, 0};
  dl.ndim = static_cast<int>(t.dim());
  dl.dtype = dl_dtype(t.dtype());
  dl.shape = ctx->shape.data();
  dl.strides = nullptr;  // compact row-major
  dl.byte_offset = 0;
  PyObject* capsule = nullptr;
  if (versioned) {
    ctx->versioned.version = {1, 0};
    ctx->versioned.manager_ctx = ctx;
    ctx->versioned.deleter = &delete_export_versioned;
    ctx->versioned.flags = 0;  // writable, shared (not a copy)
    capsule = PyCapsule_New(&ctx->versioned, kVersionedName, &capsule_destructor);
  } else {
    ctx->managed.manager_ctx = ctx;
    ctx->managed.deleter = &delete_export;
    capsule = PyCapsule_New(&ctx->managed, kCapsuleName, &capsule_destructor);
  }
  if (capsule == nullptr) {
    delete ctx;
    throw py::error_already_set();
  }
  return py::reinterpret_steal<py::capsule>(capsule);
}

bool is_compact(const DLTensor& dl) {
  if (dl.strides == nullptr) return true;
  int64_t expected = 1;
  for (int i = dl.ndim; i-- > 0;) {
    if (dl.shape[i] != 1 && dl.strides[i] != expected) return false;
    expected *= dl.shape[i];
  }
  return true;
}

Tensor from_capsule(py::handle capsule, const char* what) {
  const bool versioned = PyCapsule_IsValid(capsule.ptr(), kVersionedName);
  if (!versioned && !PyCapsule_IsValid(capsule.ptr(), kCapsuleName)) {
    throw_value_error(std::string("argument '") + what +
                      "': not an unconsumed DLPack capsule (a capsule can be consumed only once)");
  }
  DLManagedTensor* managed = nullptr;
  DLManagedTensorVersioned* managed_v = nullptr;
  if (versioned) {
    managed_v = static_cast<DLManagedTensorVersioned*>(PyCapsule_GetPointer(capsule.ptr(), kVersionedName));
    if (managed_v->version.major > 1) {
      throw_value_error(std::string("argument '") + what + "': DLPack major version " +
                        std::to_string(managed_v->version.major) + " is newer than this dtrain understands (1)");
    }
  } else {
    managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule.ptr(), kCapsuleName));
  }
  const DLTensor& dl = versioned ? managed_v->dl_tensor : managed->dl_tensor;
  const DType dtype = dtype_from_dl(dl.dtype, what);
  const Device device = device_from_dl(dl.device, what);
  if (!is_compact(dl)) {
    throw_value_error(std::string("argument '") + what +
                      "' is not C-contiguous (dtrain tensors are row-major contiguous); make a contiguous copy "
                      "first (e.g. .contiguous() in PyTorch)");
  }
  Shape shape(dl.shape, dl.shape + dl.ndim);
  void* data = static_cast<char*>(dl.data) + dl.byte_offset;
  // From here the tensor owns the capsule's memory. (A read-only producer
  // flag is not enforced: dtrain tensors have no read-only mode.)
  if (PyCapsule_SetName(capsule.ptr(), versioned ? kUsedVersionedName : kUsedCapsuleName) != 0) {
    throw py::error_already_set();
  }
  // Producers' deleters may take the GIL themselves (NumPy's does): run them
  // where that is safe (deferred_release.cpp).
  if (versioned) {
    return Tensor::from_blob(data, shape, dtype, device, [managed_v](void*) {
      release_under_gil([managed_v] {
        if (managed_v->deleter != nullptr) managed_v->deleter(managed_v);
      });
    });
  }
  return Tensor::from_blob(data, shape, dtype, device, [managed](void*) {
    release_under_gil([managed] {
      if (managed->deleter != nullptr) managed->deleter(managed);
    });
  });
}

}  // namespace

Tensor tensor_from_dlpack(py::handle obj, const char* what) {
  if (py::isinstance<py::capsule>(obj)) return from_capsule(obj, what);
  if (!has_dlpack(obj)) {
    throw_type_error(std::string("argument '") + what + "' has no __dlpack__ method");
  }
  py::object capsule;
  py::tuple dev = obj.attr("__dlpack_device__")();
  const int device_type = dev[0].cast<int>();
  if (device_type == kDLCUDA) {
    // Our current stream: the producer orders its work before it.
    const Stream s = current_stream(Device::cuda(dev[1].cast<int>()));
    intptr_t handle = reinterpret_cast<intptr_t>(s.native_handle());
    capsule = obj.attr("__dlpack__")(py::arg("stream") = handle == 0 ? 1 : handle);
  } else {
    capsule = obj.attr("__dlpack__")();
  }
  return from_capsule(capsule, what);
}

void bind_dlpack(py::module_& m) {
  auto tensor = py::reinterpret_borrow<py::object>(m.attr("Tensor"));
  auto cls = py::reinterpret_borrow<py::class_<Tensor>>(tensor);
  cls.def(
         "__dlpack__",
         [](const Tensor& t, const py::object& stream, const py::object& max_version, const py::object& dl_device,
            const py::object& copy) {
           if (!copy.is_none() && copy.cast<bool>()) {
             throw_value_error("__dlpack__(copy=True) is not supported; dtrain shares memory (copy=None/False)");
           }
           bool versioned = false;
           if (!max_version.is_none()) versioned = py::tuple(max_version)[0].cast<int>() >= 1;
           return to_dlpack(t, stream, versioned);
         },
         py::kw_only(), py::arg("stream") = py::none(), py::arg("max_version") = py::none(),
         py::arg("dl_device") = py::none(), py::arg("copy") = py::none(),
         "A DLPack capsule sharing this tensor's memory (the array API's __dlpack__).")
      .def(
          "__dlpack_device__",
          [](const Tensor& t) {
            return t.is_cuda() ? py::make_tuple(static_cast<int>(kDLCUDA), t.device().index())
                               : py::make_tuple(static_cast<int>(kDLCPU), 0);
          },
          "(device type, index) as DLPack numbers them: (1, 0) for CPU, (2, N) for cuda:N.");
  m.def(
      "from_dlpack", [](py::handle obj) { return tensor_from_dlpack(obj, "obj"); }, py::arg("obj"),
      "A tensor sharing the memory of an object with __dlpack__ (or of a DLPack capsule), no copy.");
}

}  // namespace dtrain::python
