// Python arrays in and out of dtrain tensors without copies.
//
// NumPy -> dtrain: the tensor wraps the array's buffer (Tensor::from_blob)
// and holds a reference to the array, dropped (under the GIL) when the last
// tensor using the memory goes; collectives that finish on a worker thread
// therefore never see freed memory. dtrain -> NumPy: the array views the
// tensor's storage and keeps a copy of the tensor handle alive as its base.
// Either way a write through one is visible through the other.
//
// dtrain tensors are always row-major contiguous, so an array that is not
// C-contiguous is refused (ValueError) instead of silently copied: the caller
// decides whether a copy (np.ascontiguousarray) is what they meant.
#include <pybind11/numpy.h>

#include "bindings.h"
#include "dtrain/tensor.h"

namespace dtrain::python {
namespace {

// NumPy dtype <-> dtrain dtype. bf16 has no NumPy dtype; ml_dtypes'
// "bfloat16" (what JAX uses) is accepted on the way in.
bool dtype_from_numpy(const py::dtype& dt, DType* out) {
  const char kind = dt.kind();
  const auto size = dt.itemsize();
  if (kind == 'f' && size == 4)
    *out = DType::f32;
  else if (kind == 'f' && size == 2)
    *out = DType::f16;
  else if (kind == 'i' && size == 4)
    *out = DType::i32;
  else if (kind == 'i' && size == 8)
    *out = DType::i64;
  else if (kind == 'u' && size == 1)
    *out = DType::u8;
  else if (kind == 'u' && size == 2)
    *out = DType::u16;
  else if (size == 2 && py::str(dt.attr("name")).cast<std::string>() == "bfloat16")
    *out = DType::bf16;
  else
    return false;
  return true;
}

py::dtype numpy_dtype(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return py::dtype("float32");
    case DType::f16:
      return py::dtype("float16");
    case DType::i32:
      return py::dtype("int32");
    case DType::i64:
      return py::dtype("int64");
    case DType::u8:
      return py::dtype("uint8");
    case DType::u16:
      return py::dtype("uint16");
    case DType::bf16:
      break;
  }
  throw_type_error(
      "bf16 tensors have no NumPy dtype; cast to f32 first (dtrain.ops.cast), or share them through DLPack "
      "(torch.from_dlpack)");
}

// Drops a Python reference from whatever thread frees the last tensor.
std::function<void(void*)> python_owner_deleter(py::handle owner) {
  PyObject* raw = owner.ptr();
  Py_INCREF(raw);
  return [raw](void*) { release_under_gil([raw] { Py_DECREF(raw); }); };
}

}  // namespace

Tensor tensor_from_numpy(py::handle obj, const char* what, bool writable) {
  auto array = py::reinterpret_borrow<py::array>(obj);
  DType dtype;
  if (!dtype_from_numpy(array.dtype(), &dtype)) {
    throw_type_error(std::string("argument '") + what + "': unsupported dtype " +
                     py::str(array.dtype()).cast<std::string>() +
                     "; dtrain takes float32, float16, bfloat16, int32, int64, uint8 and uint16");
  }
  if (!(array.flags() & py::array::c_style)) {
    throw_value_error(std::string("argument '") + what +
                      "' is not C-contiguous (dtrain tensors are row-major contiguous); pass "
                      "np.ascontiguousarray(x) if a copy is what you want");
  }
  if (writable && !array.writeable()) {
    throw_value_error(std::string("argument '") + what +
                      "' is a read-only array but the call writes into it; pass a writable array");
  }
  Shape shape(array.shape(), array.shape() + array.ndim());
  return Tensor::from_blob(const_cast<void*>(array.data()), shape, dtype, Device::cpu(), python_owner_deleter(obj));
}

py::object tensor_to_numpy(const Tensor& t, py::handle owner) {
  if (!t.defined()) throw_value_error("the tensor is undefined (no storage); it has no NumPy view");
  if (!t.is_cpu()) {
    throw_value_error("the tensor is on " + t.device().str() +
                      "; NumPy arrays live in host memory: call .cpu() first (a copy), or share it through "
                      "DLPack with a CUDA array library");
  }
  py::dtype dt = numpy_dtype(t.dtype());
  std::vector<py::ssize_t> shape(t.shape().begin(), t.shape().end());
  std::vector<py::ssize_t> strides(shape.size());
  py::ssize_t stride = static_cast<py::ssize_t>(dtype_size(t.dtype()));
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = stride;
    stride *= shape[i];
  }
  py::object base = owner ? py::reinterpret_borrow<py::object>(owner) : py::cast(t);
  return py::array(dt, shape, strides, t.data_ptr(), base);
}

bool has_dlpack(py::handle obj) {
  return py::hasattr(obj, "__dlpack__");
}

Tensor as_tensor(py::handle obj, const char* what, bool writable) {
  if (py::isinstance<Tensor>(obj)) return obj.cast<Tensor>();
  if (py::isinstance<py::array>(obj)) return tensor_from_numpy(obj, what, writable);
  if (has_dlpack(obj) || py::isinstance<py::capsule>(obj)) return tensor_from_dlpack(obj, what);
  if (py::isinstance<py::buffer>(obj)) {
    // memoryview, bytearray, array.array: through NumPy, still zero copy.
    py::object array = py::module_::import("numpy").attr("asarray")(obj);
    return tensor_from_numpy(array, what, writable);
  }
  throw_type_error(std::string("argument '") + what + "' must be a dtrain.Tensor, a NumPy array or an object with " +
                   "__dlpack__ (PyTorch, CuPy, JAX), got " +
                   py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
}

Tensor as_optional_tensor(py::handle obj, const char* what, bool writable) {
  if (obj.is_none()) return Tensor();
  return as_tensor(obj, what, writable);
}

}  // namespace dtrain::python
