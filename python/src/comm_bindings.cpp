// Communication for Python: stores, the Communicator's collectives on any
// array (NumPy in place, DLPack-capable arrays, dtrain tensors), async Work
// handles, and init_process_group reading the same environment as C++.
//
// Waiting. Work.wait() waits in short slices with the GIL released and checks
// for signals between slices, so other Python threads run and Ctrl-C raises
// KeyboardInterrupt at once. The collective itself carries on in the
// background; the communicator's own timeout (DTRAIN_TIMEOUT_S) ends it if a
// peer never arrives, as in C++.
//
// Signals. The library's threads (communicator worker and watchdog, Gloo,
// the store server) are created with SIGINT and SIGTERM blocked (a thread
// inherits its creator's mask; see SignalsBlocked), so the kernel delivers
// Ctrl-C to a Python thread, where the interpreter handles it, never to a
// library thread in the middle of a system call.
#include <pybind11/chrono.h>
#include <pybind11/stl.h>
#include <signal.h>

#include <chrono>
#include <cmath>

#include "bindings.h"
#include "dtrain/comm/init.h"

namespace dtrain::python {
namespace {

using comm::Communicator;
using comm::ReduceOp;
using comm::Work;
using std::chrono::milliseconds;

constexpr milliseconds kWaitSlice(50);

// Blocks SIGINT and SIGTERM in the calling thread for its scope, so threads
// the library starts meanwhile inherit the blocked mask.
class SignalsBlocked {
 public:
  SignalsBlocked() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, &previous_);
  }
  ~SignalsBlocked() { pthread_sigmask(SIG_SETMASK, &previous_, nullptr); }
  SignalsBlocked(const SignalsBlocked&) = delete;
  SignalsBlocked& operator=(const SignalsBlocked&) = delete;

 private:
  sigset_t previous_;
};

milliseconds seconds_to_ms(double s) {
  if (!(s >= 0)) throw_value_error("a timeout must be a non-negative number of seconds, got " + std::to_string(s));
  return milliseconds(std::llround(s * 1000.0));
}

// Waits for `work` with the GIL released in slices; raises on its error, on
// Ctrl-C (KeyboardInterrupt) and when `timeout_s` (None: no bound of our own)
// has passed.
void wait_interruptible(const Work& work, const py::object& timeout_s) {
  const auto start = std::chrono::steady_clock::now();
  const bool bounded = !timeout_s.is_none();
  const milliseconds limit = bounded ? seconds_to_ms(timeout_s.cast<double>()) : milliseconds(0);
  for (;;) {
    bool done = false;
    {
      py::gil_scoped_release release;
      try {
        work.wait(kWaitSlice);
        done = true;
      } catch (const Error&) {
        // Either the collective failed (it is completed: rethrow its error
        // below, with the GIL held) or this slice ran out.
        if (work.is_completed()) done = true;
      }
    }
    if (done) {
      py::gil_scoped_release release;
      work.wait();  // returns at once, or rethrows the collective's error
      return;
    }
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    if (bounded && std::chrono::steady_clock::now() - start >= limit) {
      throw_timeout_error("Work.wait: " + work.op() + " (sequence " + std::to_string(work.sequence()) +
                          ") did not finish within " + py::str(timeout_s).cast<std::string>() +
                          " s; it carries on in the background (wait again, or let DTRAIN_TIMEOUT_S end it)");
    }
  }
}

ReduceOp to_reduce_op(py::handle op) {
  if (py::isinstance<ReduceOp>(op)) return op.cast<ReduceOp>();
  const std::string name = py::str(op).cast<std::string>();
  for (ReduceOp r : {ReduceOp::sum, ReduceOp::avg, ReduceOp::max, ReduceOp::min, ReduceOp::product}) {
    if (name == comm::reduce_op_name(r)) return r;
  }
  throw_value_error("unknown reduce op '" + name + "'; expected sum, avg, max, min or product");
}

py::dict job_env_dict(const comm::JobEnv& e) {
  py::dict d;
  d["rank"] = e.rank;
  d["world_size"] = e.world_size;
  d["local_rank"] = e.local_rank;
  d["local_world_size"] = e.local_world_size;
  d["master_addr"] = e.master_addr;
  d["master_port"] = e.master_port;
  d["source"] = e.source;
  return d;
}

comm::InitOptions init_options(const py::object& rank, const py::object& world_size, const py::object& local_rank,
                               const py::object& master_addr, const py::object& master_port,
                               const std::string& auth_token, const std::string& file_store_path,
                               const py::object& timeout) {
  comm::InitOptions o;
  if (!rank.is_none()) o.rank = rank.cast<int>();
  if (!world_size.is_none()) o.world_size = world_size.cast<int>();
  if (!local_rank.is_none()) o.local_rank = local_rank.cast<int>();
  if (!master_addr.is_none()) o.master_addr = master_addr.cast<std::string>();
  if (!master_port.is_none()) o.master_port = master_port.cast<int>();
  o.auth_token = auth_token;
  o.file_store_path = file_store_path;
  if (!timeout.is_none()) o.comm.timeout = seconds_to_ms(timeout.cast<double>());
  return o;
}

void bind_store(py::module_& m) {
  py::class_<comm::Store, std::shared_ptr<comm::Store>>(m, "Store", "Key/value rendezvous shared by a job's ranks.")
      .def(
          "set", [](comm::Store& s, const std::string& k, const py::bytes& v) { s.set(k, std::string(v)); },
          py::arg("key"), py::arg("value"))
      .def(
          "get",
          [](comm::Store& s, const std::string& k) {
            std::string v;
            {
              py::gil_scoped_release r;
              v = s.get(k);
            }
            return py::bytes(v);
          },
          py::arg("key"), "The value, waiting up to the store's timeout for the key.")
      .def("add", &comm::Store::add, py::arg("key"), py::arg("delta"), py::call_guard<py::gil_scoped_release>())
      .def("check", &comm::Store::check, py::arg("keys"))
      .def("delete_key", &comm::Store::delete_key, py::arg("key"));
  py::class_<comm::FileStore, comm::Store, std::shared_ptr<comm::FileStore>>(
      m, "FileStore", "A store in a directory every rank can reach (use a fresh one per job).")
      .def(py::init([](const std::string& dir, double timeout_s) {
             return std::make_shared<comm::FileStore>(dir, seconds_to_ms(timeout_s));
           }),
           py::arg("directory"), py::arg("timeout") = 300.0);
}

void bind_work(py::module_& m) {
  py::class_<Work>(m, "Work", "The handle of an asynchronous collective.")
      .def("is_completed", &Work::is_completed, "True once finished, successfully or not (never blocks).")
      .def("wait", &wait_interruptible, py::arg("timeout") = py::none(),
           "Blocks until the collective finished and re-raises its error. timeout: seconds "
           "(DtrainTimeoutError when it passes; the collective carries on). Ctrl-C interrupts.")
      .def_property_readonly("op", &Work::op)
      .def_property_readonly("sequence", &Work::sequence)
      .def("__repr__", [](const Work& w) {
        return "dtrain.Work(op='" + w.op() + "', sequence=" + std::to_string(w.sequence()) +
               ", completed=" + (w.is_completed() ? "True" : "False") + ")";
      });
}

void bind_communicator(py::module_& m) {
  py::class_<Communicator, std::shared_ptr<Communicator>> c(m, "Communicator", R"doc(
Collectives over a fixed group of ranks (Gloo for CPU memory, NCCL for CUDA).

All ranks call the same collectives in the same order. Arrays (NumPy,
dtrain.Tensor, DLPack-capable) are used in place without copies; every call
returns a Work: call .wait() before reading the result.)doc");
  c.def(py::init([](std::shared_ptr<comm::Store> store, int rank, int size, const py::object& timeout) {
          comm::CommOptions o;
          if (!timeout.is_none()) o.timeout = seconds_to_ms(timeout.cast<double>());
          py::gil_scoped_release r;
          SignalsBlocked blocked;
          return std::make_shared<Communicator>(std::move(store), rank, size, o);
        }),
        py::arg("store"), py::arg("rank"), py::arg("size"), py::arg("timeout") = py::none())
      .def_property_readonly("rank", &Communicator::rank)
      .def_property_readonly("size", &Communicator::size)
      .def_property_readonly("timeout", [](const Communicator& c) { return c.timeout().count() / 1000.0; })
      .def_property_readonly("sequence_number", &Communicator::sequence_number)
      .def_property_readonly("error", &Communicator::error, "Empty while healthy; the first error once broken.")
      .def(
          "all_reduce",
          [](Communicator& c, py::handle t, py::handle op, py::handle output) {
            Tensor in = as_tensor(t, "tensor", output.is_none());
            ReduceOp r = to_reduce_op(op);
            if (output.is_none()) {
              py::gil_scoped_release g;
              return c.all_reduce(in, r);
            }
            Tensor o = as_tensor(output, "output", true);
            py::gil_scoped_release g;
            return c.all_reduce(in, o, r);
          },
          py::arg("tensor"), py::arg("op") = "sum", py::arg("output") = py::none(),
          "Every rank ends with op over all ranks' arrays (in place, or into output).")
      .def(
          "all_reduce_coalesced",
          [](Communicator& c, const py::list& tensors, py::handle op) {
            std::vector<Tensor> list;
            for (py::handle t : tensors) list.push_back(as_tensor(t, "tensors", true));
            ReduceOp r = to_reduce_op(op);
            py::gil_scoped_release g;
            return c.all_reduce_coalesced(list, r);
          },
          py::arg("tensors"), py::arg("op") = "sum", "Many arrays in one call, one Work.")
      .def(
          "reduce_scatter",
          [](Communicator& c, py::handle input, py::handle output, py::handle op) {
            Tensor i = as_tensor(input, "input"), o = as_tensor(output, "output", true);
            ReduceOp r = to_reduce_op(op);
            py::gil_scoped_release g;
            return c.reduce_scatter(i, o, r);
          },
          py::arg("input"), py::arg("output"), py::arg("op") = "sum",
          "input.numel == size * output.numel; rank r gets the reduction of chunk r.")
      .def(
          "all_gather",
          [](Communicator& c, py::handle input, py::handle output) {
            Tensor i = as_tensor(input, "input"), o = as_tensor(output, "output", true);
            py::gil_scoped_release g;
            return c.all_gather(i, o);
          },
          py::arg("input"), py::arg("output"), "Chunk r of output is rank r's input.")
      .def(
          "broadcast",
          [](Communicator& c, py::handle t, int root) {
            Tensor x = as_tensor(t, "tensor", true);
            py::gil_scoped_release g;
            return c.broadcast(x, root);
          },
          py::arg("tensor"), py::arg("root") = 0, "Every rank ends with root's array (in place).")
      .def(
          "send",
          [](Communicator& c, py::handle t, int dst, uint32_t tag) {
            Tensor x = as_tensor(t, "tensor");
            py::gil_scoped_release g;
            return c.send(x, dst, tag);
          },
          py::arg("tensor"), py::arg("dst"), py::arg("tag") = 0)
      .def(
          "recv",
          [](Communicator& c, py::handle t, int src, uint32_t tag) {
            Tensor x = as_tensor(t, "tensor", true);
            py::gil_scoped_release g;
            return c.recv(x, src, tag);
          },
          py::arg("tensor"), py::arg("src"), py::arg("tag") = 0)
      .def(
          "all_to_all",
          [](Communicator& c, py::handle input, py::handle output) {
            Tensor i = as_tensor(input, "input"), o = as_tensor(output, "output", true);
            py::gil_scoped_release g;
            return c.all_to_all(i, o);
          },
          py::arg("input"), py::arg("output"), "Chunk j of input goes to rank j; chunk i of output comes from rank i.")
      .def("barrier", &Communicator::barrier, py::call_guard<py::gil_scoped_release>())
      .def("split", &Communicator::split, py::arg("color"), py::arg("key") = 0,
           py::call_guard<py::gil_scoped_release, SignalsBlocked>(),
           "Sub-communicators: ranks with the same color form one (None for a negative color).")
      .def("__repr__", [](const Communicator& c) {
        return "dtrain.Communicator(rank=" + std::to_string(c.rank()) + ", size=" + std::to_string(c.size()) + ")";
      });
}

}  // namespace

void bind_comm(py::module_& m) {
  py::enum_<ReduceOp>(m, "ReduceOp")
      .value("sum", ReduceOp::sum)
      .value("avg", ReduceOp::avg)
      .value("max", ReduceOp::max)
      .value("min", ReduceOp::min)
      .value("product", ReduceOp::product);
  bind_store(m);
  bind_work(m);
  bind_communicator(m);

  m.def(
      "init_process_group",
      [](const py::object& rank, const py::object& world_size, const py::object& local_rank,
         const py::object& master_addr, const py::object& master_port, const std::string& auth_token,
         const std::string& file_store_path, const py::object& timeout) {
        auto o =
            init_options(rank, world_size, local_rank, master_addr, master_port, auth_token, file_store_path, timeout);
        py::gil_scoped_release r;
        SignalsBlocked blocked;
        return comm::init_process_group(o);
      },
      py::kw_only(), py::arg("rank") = py::none(), py::arg("world_size") = py::none(),
      py::arg("local_rank") = py::none(), py::arg("master_addr") = py::none(), py::arg("master_port") = py::none(),
      py::arg("auth_token") = "", py::arg("file_store_path") = "", py::arg("timeout") = py::none(),
      "Joins the job described by the environment (dtrain-run/torchrun, Slurm, Open MPI; none: one process) and "
      "returns the world communicator. Keyword arguments override the environment.");
  m.def("world", &comm::world, "The communicator init_process_group made (raises if none).");
  m.def("is_initialized", &comm::is_initialized);
  m.def("destroy_process_group", &comm::destroy_process_group, py::call_guard<py::gil_scoped_release>());
  m.def(
      "job_env", [] { return job_env_dict(comm::job_env_from_environment()); },
      "Rank, world size, local rank, master address/port and the launcher the environment names.");
  m.def(
      "timeout_from_environment", [] { return comm::timeout_from_environment().count() / 1000.0; },
      "DTRAIN_TIMEOUT_S in seconds (default 300).");
}

}  // namespace dtrain::python
