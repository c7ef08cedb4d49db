// dtrain::Error as Python exceptions.
//
// Every dtrain::Error becomes dtrain.DtrainError (a RuntimeError). Errors
// about a bad argument become a subclass that is also the matching built-in
// class, so `except ValueError` / `except TypeError` work as Python users
// expect:
//   DtrainTypeError(DtrainError, TypeError)     wrong dtype, unsupported type
//   DtrainValueError(DtrainError, ValueError)   wrong shape, device, range,
//                                               non-contiguous or read-only array
//   DtrainTimeoutError(DtrainError, TimeoutError)  a wait ran past its timeout
// The C++ library has one error type; the class is chosen from the fixed
// phrases its argument checks use (src/ops/checks.cpp), listed below.
#include <pybind11/pybind11.h>

#include <cstring>

#include "bindings.h"
#include "dtrain/error.h"

namespace dtrain::python {
namespace {

PyObject* g_error = nullptr;
PyObject* g_value_error = nullptr;
PyObject* g_type_error = nullptr;
PyObject* g_timeout_error = nullptr;

PyObject* make_class(py::module_& m, const char* name, const char* doc, PyObject* bases) {
  const std::string qualified = std::string("dtrain._C.") + name;
  PyObject* cls = PyErr_NewExceptionWithDoc(qualified.c_str(), doc, bases, nullptr);
  if (cls == nullptr) throw py::error_already_set();
  m.add_object(name, py::handle(cls));  // the module holds the reference, forever
  return cls;
}

bool contains_any(const char* text, std::initializer_list<const char*> phrases) {
  for (const char* p : phrases) {
    if (std::strstr(text, p) != nullptr) return true;
  }
  return false;
}

PyObject* class_for(const char* message) {
  if (contains_any(message, {"has the wrong dtype", "unsupported dtype", "accessed as"})) return g_type_error;
  if (contains_any(message, {"did not finish within"})) return g_timeout_error;
  if (contains_any(message,
                   {"has the wrong shape", "wrong number of dimensions", "too few dimensions", "is out of range",
                    "must be finite", "is on the wrong device", "overlaps argument", "unknown dtype",
                    "cannot parse device", "unknown GPT preset", "device index must be", "unknown precision"})) {
    return g_value_error;
  }
  return g_error;
}

}  // namespace

[[noreturn]] void throw_value_error(const std::string& message) {
  PyErr_SetString(g_value_error, message.c_str());
  throw py::error_already_set();
}

[[noreturn]] void throw_type_error(const std::string& message) {
  PyErr_SetString(g_type_error, message.c_str());
  throw py::error_already_set();
}

[[noreturn]] void throw_timeout_error(const std::string& message) {
  PyErr_SetString(g_timeout_error, message.c_str());
  throw py::error_already_set();
}

void bind_errors(py::module_& m) {
  g_error = make_class(m, "DtrainError",
                       "An error raised by dtrain (C++ dtrain::Error): the message names what failed and where.",
                       PyExc_RuntimeError);
  py::tuple value_bases = py::make_tuple(py::handle(g_error), py::handle(PyExc_ValueError));
  g_value_error =
      make_class(m, "DtrainValueError", "A bad argument value: shape, device, range, layout.", value_bases.ptr());
  py::tuple type_bases = py::make_tuple(py::handle(g_error), py::handle(PyExc_TypeError));
  g_type_error = make_class(m, "DtrainTypeError", "A bad argument type or dtype.", type_bases.ptr());
  py::tuple timeout_bases = py::make_tuple(py::handle(g_error), py::handle(PyExc_TimeoutError));
  g_timeout_error =
      make_class(m, "DtrainTimeoutError", "A wait did not finish within its timeout.", timeout_bases.ptr());

  // pybind11 fixes the by-value signature.
  py::register_exception_translator([](std::exception_ptr p) {  // NOLINT(performance-unnecessary-value-param)
    try {
      if (p) std::rethrow_exception(p);
    } catch (const dtrain::Error& e) {
      PyErr_SetString(class_for(e.what()), e.what());
    }
  });
}

}  // namespace dtrain::python
