// dtrain's core for Python: DType, Device, Tensor (with the buffer protocol,
// so np.asarray(t) is a zero-copy view), allocator statistics and streams.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <sstream>

#include "bindings.h"
#include "dtrain/allocator.h"
#include "dtrain/device.h"
#include "dtrain/stream.h"
#include "dtrain/tensor.h"

namespace dtrain::python {

DType to_dtype(py::handle obj) {
  if (py::isinstance<DType>(obj)) return obj.cast<DType>();
  std::string name;
  if (py::isinstance<py::str>(obj)) {
    name = obj.cast<std::string>();
  } else {
    name = py::str(py::module_::import("numpy").attr("dtype")(obj).attr("name")).cast<std::string>();
  }
  static const std::pair<const char*, DType> kAliases[] = {
      {"float32", DType::f32}, {"bfloat16", DType::bf16}, {"float16", DType::f16}, {"int32", DType::i32},
      {"int64", DType::i64},   {"uint8", DType::u8},      {"uint16", DType::u16}};
  for (const auto& [alias, dt] : kAliases) {
    if (name == alias) return dt;
  }
  try {
    return dtype_from_name(name);
  } catch (const Error& e) {
    throw_type_error(e.what());
  }
}

namespace {

Device to_device(py::handle obj) {
  if (py::isinstance<Device>(obj)) return obj.cast<Device>();
  if (py::isinstance<py::str>(obj)) return Device::parse(obj.cast<std::string>());
  throw_type_error("a device is a dtrain.Device or a string ('cpu', 'cuda', 'cuda:N'), got " +
                   py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
}

Shape to_shape(py::handle obj) {
  if (py::isinstance<py::int_>(obj)) return {obj.cast<int64_t>()};
  return obj.cast<Shape>();
}

py::tuple shape_tuple(const Shape& s) {
  py::tuple t(s.size());
  for (size_t i = 0; i < s.size(); ++i) t[i] = s[i];
  return t;
}

std::string tensor_repr(const Tensor& t) {
  if (!t.defined()) return "dtrain.Tensor(undefined)";
  std::ostringstream os;
  os << "dtrain.Tensor(shape=" << py::str(shape_tuple(t.shape())).cast<std::string>()
     << ", dtype=" << dtype_name(t.dtype()) << ", device='" << t.device().str() << "')";
  return os.str();
}

const char* buffer_format(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return "f";
    case DType::f16:
      return "e";
    case DType::i32:
      return "i";
    case DType::i64:
      return "q";
    case DType::u8:
      return "B";
    case DType::u16:
      return "H";
    case DType::bf16:
      break;
  }
  return nullptr;
}

py::dict stats_dict(const MemoryStats& s) {
  py::dict d;
  d["current_bytes"] = s.current_bytes;
  d["peak_bytes"] = s.peak_bytes;
  d["current_allocations"] = s.current_allocations;
  d["total_allocations"] = s.total_allocations;
  d["reserved_bytes"] = s.reserved_bytes;
  return d;
}

void bind_dtype_device(py::module_& m) {
  py::enum_<DType>(m, "DType", "Element type of a tensor.")
      .value("f32", DType::f32)
      .value("bf16", DType::bf16)
      .value("f16", DType::f16)
      .value("i32", DType::i32)
      .value("i64", DType::i64)
      .value("u8", DType::u8)
      .value("u16", DType::u16)
      .def_property_readonly(
          "itemsize", [](DType d) { return dtype_size(d); }, "Bytes per element.")
      .def_property_readonly("is_floating", [](DType d) { return is_floating(d); });
  m.def("dtype", &to_dtype, py::arg("spec"),
        "A DType from a name ('f32', 'float32', 'bfloat16', ...) or a NumPy dtype.");

  py::class_<Device>(m, "Device", "Where a tensor lives: 'cpu' or 'cuda:N'.")
      .def(py::init([](const std::string& text) { return Device::parse(text); }), py::arg("spec"))
      .def_property_readonly("type", [](const Device& d) { return d.is_cpu() ? "cpu" : "cuda"; })
      .def_property_readonly("index", &Device::index)
      .def_property_readonly("is_cpu", &Device::is_cpu)
      .def_property_readonly("is_cuda", &Device::is_cuda)
      .def("__str__", &Device::str)
      .def("__repr__", [](const Device& d) { return "dtrain.Device('" + d.str() + "')"; })
      .def("__eq__",
           [](const Device& a, py::handle b) {
             if (py::isinstance<Device>(b)) return a == b.cast<Device>();
             if (py::isinstance<py::str>(b)) return a.str() == Device::parse(b.cast<std::string>()).str();
             return false;
           })
      .def("__hash__", [](const Device& d) { return py::hash(py::str(d.str())); });
  py::implicitly_convertible<py::str, Device>();

  m.def("cuda_compiled", &cuda_compiled, "True when dtrain was built with CUDA.");
  m.def("cuda_device_count", &cuda_device_count, "Usable CUDA devices (0 without a GPU or driver).");
  m.def(
      "memory_stats", [](py::handle device) { return stats_dict(memory_stats(to_device(device))); },
      py::arg("device") = "cpu",
      "The device allocator's statistics: current/peak bytes, live/total allocations, reserved bytes.");
  m.def(
      "reset_peak_memory", [](py::handle device) { reset_peak_memory(to_device(device)); }, py::arg("device") = "cpu",
      "Sets the peak statistic to the current bytes.");
  m.def(
      "empty_cache", [](py::handle device) { empty_cache(to_device(device)); }, py::arg("device") = "cpu",
      "Returns the caching allocator's free blocks to the system.");
  m.def(
      "synchronize",
      [](py::handle device) {
        Device d = to_device(device);
        py::gil_scoped_release release;
        synchronize(d);
      },
      py::arg("device") = "cpu", "Waits for all queued work on the device.");
}

void bind_tensor(py::module_& m) {
  py::class_<Tensor> cls(m, "Tensor", py::buffer_protocol(), R"doc(
A handle to row-major contiguous memory on one device: shape, dtype, device.

Copying a Tensor (or passing it around) shares the memory. NumPy views it
without a copy: np.asarray(t) or t.numpy(); dtrain.from_numpy(a) goes the other
way. DLPack (__dlpack__, dtrain.from_dlpack) shares with PyTorch, CuPy, JAX.)doc");
  cls.def_buffer([](Tensor& t) -> py::buffer_info {
    if (!t.is_cpu()) throw_value_error("a " + t.device().str() + " tensor has no host buffer; call .cpu() first");
    const char* fmt = buffer_format(t.dtype());
    if (fmt == nullptr) throw_type_error("bf16 tensors have no buffer format; cast to f32 first");
    std::vector<py::ssize_t> shape(t.shape().begin(), t.shape().end()), strides(shape.size());
    py::ssize_t stride = static_cast<py::ssize_t>(dtype_size(t.dtype()));
    for (size_t i = shape.size(); i-- > 0;) {
      strides[i] = stride;
      stride *= shape[i];
    }
    return py::buffer_info(t.data_ptr(), static_cast<py::ssize_t>(dtype_size(t.dtype())), fmt,
                           static_cast<py::ssize_t>(shape.size()), shape, strides, /*readonly=*/false);
  });
  cls.def_property_readonly("shape", [](const Tensor& t) { return shape_tuple(t.shape()); })
      .def_property_readonly("dtype", &Tensor::dtype)
      .def_property_readonly("device", &Tensor::device)
      .def_property_readonly("ndim", &Tensor::dim)
      .def_property_readonly("numel", &Tensor::numel)
      .def_property_readonly("nbytes", &Tensor::nbytes)
      .def_property_readonly("is_cuda", &Tensor::is_cuda)
      .def_property_readonly("is_cpu", &Tensor::is_cpu)
      .def_property_readonly("defined", &Tensor::defined)
      .def_property_readonly(
          "data_ptr", [](const Tensor& t) { return reinterpret_cast<uintptr_t>(t.data_ptr()); },
          "Address of the first element.")
      .def("__len__",
           [](const Tensor& t) {
             if (t.dim() == 0) throw_type_error("len() of a 0-d tensor");
             return t.size(0);
           })
      .def("__repr__", &tensor_repr)
      .def(
          "numpy", [](const py::object& self) { return tensor_to_numpy(self.cast<Tensor>(), self); },
          "A NumPy array sharing this tensor's memory (CPU tensors; bf16 has no NumPy dtype).")
      .def("tolist", [](const py::object& self) { return tensor_to_numpy(self.cast<Tensor>(), self).attr("tolist")(); })
      .def("item",
           [](const Tensor& t) {
             if (t.numel() != 1)
               throw_value_error("item() needs a tensor of one element, this has " + std::to_string(t.numel()));
             return t.is_cpu() ? t.item(0) : t.to(Device::cpu()).item(0);
           })
      .def(
          "to", [](const Tensor& t, py::handle device) { return t.to(to_device(device)); }, py::arg("device"),
          "A copy on `device` (this tensor when already there).")
      .def("cpu", [](const Tensor& t) { return t.to(Device::cpu()); })
      .def(
          "cuda", [](const Tensor& t, int index) { return t.to(Device::cuda(index)); }, py::arg("index") = 0)
      .def("clone", &Tensor::clone)
      .def(
          "reshape",
          [](const Tensor& t, const py::args& dims) {
            if (dims.size() == 1 && !py::isinstance<py::int_>(dims[0])) return t.reshape(to_shape(dims[0]));
            return t.reshape(dims.cast<Shape>());
          },
          "A view with a new shape (one dimension may be -1).")
      .def("flatten", &Tensor::flatten)
      .def("narrow", &Tensor::narrow, py::arg("start"), py::arg("length"),
           "Rows [start, start + length) of the leading dimension, as a view.")
      .def(
          "copy_",
          [](Tensor& t, py::handle src) -> Tensor& {
            Tensor s = as_tensor(src, "src");
            py::gil_scoped_release release;
            return t.copy_(s);
          },
          py::arg("src"), "Copies an array of the same numel and dtype into this tensor (any devices).")
      .def("zero_", &Tensor::zero_)
      .def("fill_", &Tensor::fill_, py::arg("value"))
      .def("shares_memory", [](const Tensor& t, py::handle other) { return t.overlaps(as_tensor(other, "other")); })
      .def(
          "__array__",
          [](const py::object& self, const py::object& dtype, const py::object& copy) {
            py::object a = tensor_to_numpy(self.cast<Tensor>(), self);
            if (!dtype.is_none())
              a = a.attr("astype")(dtype, py::arg("copy") = copy.is_none() ? py::bool_(false) : copy);
            else if (!copy.is_none() && copy.cast<bool>())
              a = a.attr("copy")();
            return a;
          },
          py::arg("dtype") = py::none(), py::arg("copy") = py::none());

  m.def(
      "empty",
      [](py::handle shape, py::handle dtype, py::handle device) {
        return Tensor::empty(to_shape(shape), to_dtype(dtype), to_device(device));
      },
      py::arg("shape"), py::arg("dtype") = "f32", py::arg("device") = "cpu", "An uninitialised tensor.");
  m.def(
      "zeros",
      [](py::handle shape, py::handle dtype, py::handle device) {
        return Tensor::zeros(to_shape(shape), to_dtype(dtype), to_device(device));
      },
      py::arg("shape"), py::arg("dtype") = "f32", py::arg("device") = "cpu");
  m.def(
      "full",
      [](py::handle shape, double value, py::handle dtype, py::handle device) {
        return Tensor::full(to_shape(shape), value, to_dtype(dtype), to_device(device));
      },
      py::arg("shape"), py::arg("value"), py::arg("dtype") = "f32", py::arg("device") = "cpu");
  m.def(
      "from_numpy", [](py::handle array) { return tensor_from_numpy(array, "array", false); }, py::arg("array"),
      "A tensor sharing a C-contiguous NumPy array's memory (no copy; writes show both ways).");
  m.def(
      "as_tensor", [](py::handle obj) { return as_tensor(obj, "obj"); }, py::arg("obj"),
      "A tensor sharing the memory of a Tensor, NumPy array or DLPack-capable array (no copy).");
}

}  // namespace

void bind_core(py::module_& m) {
  bind_dtype_device(m);
  bind_tensor(m);
}

}  // namespace dtrain::python
