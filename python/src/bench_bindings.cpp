// dtrain._C._bench: the C++ side of the Python overhead benchmark
// (benchmarks/python/overhead.py). Each function runs, in C++, the very loop
// the benchmark also runs from Python, and returns its wall time, so both
// are measured in the same process, on the same objects, one after the other.
#include <chrono>

#include "bindings.h"
#include "dtrain/comm/communicator.h"
#include "dtrain/data/data_loader.h"
#include "dtrain/nn/gpt.h"
#include "dtrain/optim/clip.h"
#include "dtrain/optim/optimizer.h"
#include "dtrain/optim/schedule.h"

namespace dtrain::python {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// `iters` in-place all-reduces of `tensor`, each waited for.
double all_reduce_loop(comm::Communicator& comm, py::handle tensor, int64_t iters) {
  Tensor t = as_tensor(tensor, "tensor", true);
  py::gil_scoped_release release;
  const auto start = Clock::now();
  for (int64_t i = 0; i < iters; ++i) comm.all_reduce(t).wait();
  return seconds_since(start);
}

// `steps` training steps as train_gpt runs them (examples/train_gpt/trainer.cpp):
// next batch, zero_grad, forward, backward, grad norm, schedule, clipped AdamW step.
double train_loop(nn::GPT& model, data::DataLoader& loader, optim::Optimizer& opt,
                  const optim::CosineSchedule& schedule, int64_t first_step, int64_t steps, float grad_clip) {
  py::gil_scoped_release release;
  const auto start = Clock::now();
  for (int64_t s = first_step; s < first_step + steps; ++s) {
    const data::Batch& batch = loader.next();
    model.zero_grad();
    model.forward(batch.inputs, batch.targets);
    model.backward();
    const float norm = optim::grad_norm(opt.grads());
    opt.step(schedule.lr(s), optim::clip_scale(norm, grad_clip));
  }
  return seconds_since(start);
}

}  // namespace

void bind_bench(py::module_& parent) {
  py::module_ m = parent.def_submodule("_bench", "C++ reference loops for the Python overhead benchmark.");
  m.def("all_reduce_loop", &all_reduce_loop, py::arg("comm"), py::arg("tensor"), py::arg("iters"));
  m.def("train_loop", &train_loop, py::arg("model"), py::arg("loader"), py::arg("optimizer"), py::arg("schedule"),
        py::arg("first_step"), py::arg("steps"), py::arg("grad_clip"));
}

}  // namespace dtrain::python
