// dtrain._C: the extension module. Each area of the library is bound in its
// own file (bindings.h lists them); the Python package (python/dtrain/)
// re-exports them under Pythonic names and adds the pure-Python parts.
#include "bindings.h"

PYBIND11_MODULE(_C, m) {
  namespace dp = dtrain::python;
  m.doc() =
      "dtrain's C++ core: tensors, ops, communication, models, optimizers, the data-parallel engine, checkpoints.";
  dp::bind_errors(m);
  dp::bind_core(m);
  dp::bind_dlpack(m);
  dp::bind_ops(m);
  dp::bind_comm(m);
  dp::bind_nn(m);
  dp::bind_training(m);
  dp::bind_checkpoint(m);
  dp::bind_bench(m);
}
