// What the binding files of dtrain._C share: one bind_* function per area
// (each file binds one layer of the library), the conversion of Python arrays
// into dtrain tensors, and the exception classes.
//
// Arrays in: a parameter documented as "array" accepts a dtrain.Tensor, a
// NumPy array (zero copy through the buffer protocol; C-contiguous only) or
// any object with __dlpack__ (PyTorch, CuPy, JAX; zero copy). The tensor made
// from it keeps the Python object alive, so an asynchronous collective may
// outlive the caller's reference.
#pragma once

#include <pybind11/pybind11.h>

#include <functional>
#include <string>

#include "dtrain/tensor.h"

namespace dtrain::python {

namespace py = pybind11;

void bind_errors(py::module_& m);
void bind_core(py::module_& m);
void bind_dlpack(py::module_& m);
void bind_ops(py::module_& m);
void bind_comm(py::module_& m);
void bind_nn(py::module_& m);
void bind_training(py::module_& m);
void bind_checkpoint(py::module_& m);
void bind_bench(py::module_& m);

// Raise dtrain.DtrainValueError / dtrain.DtrainTypeError (subclasses of
// DtrainError and of ValueError / TypeError) from binding code.
[[noreturn]] void throw_value_error(const std::string& message);
[[noreturn]] void throw_type_error(const std::string& message);
[[noreturn]] void throw_timeout_error(const std::string& message);

// A DType from a DType, its name ("f32", "bf16"), a NumPy-style name
// ("float32", "bfloat16", "int32", ...) or a NumPy dtype / scalar type;
// DtrainTypeError for anything else (core_bindings.cpp).
DType to_dtype(py::handle obj);

// A dtrain tensor viewing `obj` (see the top of this file). `what` names the
// argument in error messages. With `writable`, read-only arrays are refused.
Tensor as_tensor(py::handle obj, const char* what, bool writable = false);
// An optional array: None becomes an undefined Tensor.
Tensor as_optional_tensor(py::handle obj, const char* what, bool writable = false);

// Runs fn (which touches Python objects) with the GIL: now if this thread
// holds it, else later on the interpreter's main thread (deferred_release.cpp).
void release_under_gil(std::function<void()> fn);

// Zero-copy views between NumPy and dtrain (CPU memory only).
Tensor tensor_from_numpy(py::handle array, const char* what, bool writable);
py::object tensor_to_numpy(const Tensor& t, py::handle owner);

// A Tensor from a DLPack capsule or an object with __dlpack__ (dlpack.cpp).
Tensor tensor_from_dlpack(py::handle obj, const char* what);
bool has_dlpack(py::handle obj);

}  // namespace dtrain::python
