// dtrain.checkpoint for Python: sharded checkpoints of a model trained
// through the data-parallel engine (include/dtrain/checkpoint.h), in any
// precision. Thin: save_async() fills the manifest's Meta from the
// model, optimizer and engine as examples/train_gpt/checkpointing.cpp does
// (so the two read each other's checkpoints), and resume() is
// checkpoint::resume_engine. Files are read and written with the GIL
// released; a damaged file raises dtrain.DtrainError naming it.
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "bindings.h"
#include "dtrain/checkpoint.h"
#include "dtrain/comm/communicator.h"
#include "dtrain/error.h"
#include "dtrain/nn/gpt.h"
#include "dtrain/optim/optimizer.h"
#include "dtrain/parallel/data_parallel.h"

namespace dtrain::python {
namespace {

using checkpoint::Meta;
using py::arg;

// The model fields train_gpt records (empty for models that are not a GPT).
std::map<std::string, int64_t> model_fields(const nn::Module& model) {
  const auto* gpt = dynamic_cast<const nn::GPT*>(&model);
  if (gpt == nullptr) return {};
  const nn::GPTConfig& c = gpt->config();
  return {{"n_layer", c.n_layer},
          {"n_head", c.n_head},
          {"n_embd", c.n_embd},
          {"vocab_size", c.vocab_size},
          {"max_seq_len", c.max_seq_len}};
}

checkpoint::KeyPtr key_from(const py::object& key_hex) {
  if (key_hex.is_none()) return nullptr;
  return checkpoint::EncryptionKey::from_hex(key_hex.cast<std::string>(), "the key argument");
}

// Everything a save needs, gathered with the GIL held.
struct SaveRequest {
  Meta meta;
  std::vector<checkpoint::Piece> pieces;
  checkpoint::SaveOptions options;
  comm::Communicator* comm = nullptr;
};

SaveRequest make_request(const nn::Module& model, optim::Optimizer& optimizer, parallel::DataParallel& engine,
                         comm::Communicator* communicator, int64_t step, const py::object& data,
                         const std::map<std::string, double>& hyper, uint64_t seed, int keep_last,
                         const py::object& key_hex) {
  DTRAIN_CHECK(step >= 0, "checkpoint save: step must be >= 0, got ", step);
  SaveRequest r;
  engine.wait_for_parameters();
  r.meta.step = step;
  r.meta.world_size = engine.world_size();
  r.meta.zero_stage = engine.options().stage;
  r.meta.model = model_fields(model);
  r.meta.hyper = hyper;
  r.meta.optimizer_steps = optimizer.steps_done();
  r.meta.schedule_step = step;
  if (!data.is_none()) r.meta.data = data.cast<data::LoaderPosition>();
  r.meta.seed = seed;
  checkpoint::record_engine_state(engine, r.meta);
  const bool replicated = engine.options().stage == 0;
  r.pieces = checkpoint::owned_pieces(model, optimizer, engine.rank(), engine.world_size(), replicated);
  r.options.keep_last = keep_last;
  r.options.key = key_from(key_hex);
  r.comm = communicator;
  return r;
}

// Checks that a checkpoint of a GPT is resumed into a GPT of the same sizes.
void check_same_model(const checkpoint::Reader& reader, const nn::Module& model) {
  const auto want = model_fields(model);
  const auto& saved = reader.meta().model;
  if (want.empty() || saved.empty() || saved == want) return;
  auto field = [](const std::map<std::string, int64_t>& m, const char* k) {
    const auto it = m.find(k);
    return it == m.end() ? int64_t{-1} : it->second;
  };
  DTRAIN_THROW("checkpoint ", reader.dir(), " holds a different model (", field(saved, "n_layer"), " layers, width ",
               field(saved, "n_embd"), ", vocabulary ", field(saved, "vocab_size"), ") than the one given (",
               field(want, "n_layer"), " layers, width ", field(want, "n_embd"), ", vocabulary ",
               field(want, "vocab_size"), "); build the model with the checkpoint's GPTConfig");
}

void bind_meta(py::module_& m) {
  py::class_<Meta>(m, "Meta", "What a checkpoint's manifest records besides the tensors.")
      .def_readonly("step", &Meta::step, "Training steps completed when saved.")
      .def_readonly("world_size", &Meta::world_size)
      .def_readonly("zero_stage", &Meta::zero_stage)
      .def_readonly("model", &Meta::model, "The GPTConfig sizes (empty for other models).")
      .def_readonly("optimizer", &Meta::optimizer)
      .def_readonly("hyper", &Meta::hyper, "The hyper-parameters given to save().")
      .def_readonly("optimizer_steps", &Meta::optimizer_steps)
      .def_readonly("schedule_step", &Meta::schedule_step)
      .def_readonly("data", &Meta::data, "The data loader's position (a dtrain.data.LoaderPosition).")
      .def_readonly("seed", &Meta::seed)
      .def_readonly("param_dtype", &Meta::param_dtype, "'f32', 'bf16' or 'f16': the run's parameter dtype.")
      .def_readonly("has_loss_scaler", &Meta::has_loss_scaler)
      .def("__repr__", [](const Meta& x) {
        return "dtrain.checkpoint.Meta(step=" + std::to_string(x.step) +
               ", world_size=" + std::to_string(x.world_size) + ", zero_stage=" + std::to_string(x.zero_stage) +
               ", param_dtype='" + x.param_dtype + "')";
      });
}

void bind_reader(py::module_& m) {
  py::class_<checkpoint::Reader>(m, "Reader", R"doc(
A checkpoint directory opened for reading (the manifest parsed and checked).

Every file is verified against its checksum before its first read; a damaged
file raises dtrain.DtrainError naming it. An encrypted checkpoint needs its
key (64 hex digits).)doc")
      .def(py::init([](const std::filesystem::path& dir, const py::object& key) {
             checkpoint::KeyPtr k = key_from(key);
             py::gil_scoped_release r;
             return std::make_unique<checkpoint::Reader>(dir.string(), std::move(k));
           }),
           arg("dir"), arg("key") = py::none())
      .def_property_readonly("meta", &checkpoint::Reader::meta, py::return_value_policy::reference_internal)
      .def_property_readonly("dir", &checkpoint::Reader::dir)
      .def("tensor_names", &checkpoint::Reader::tensor_names)
      .def("files", &checkpoint::Reader::files)
      .def("verify", &checkpoint::Reader::verify, arg("file"), py::call_guard<py::gil_scoped_release>(),
           "Recomputes one file's checksum; raises DtrainError naming it on a mismatch.")
      .def("verify_all", &checkpoint::Reader::verify_all, py::call_guard<py::gil_scoped_release>())
      .def("read_full", &checkpoint::Reader::read_full, arg("name"), py::call_guard<py::gil_scoped_release>(),
           "One whole tensor (f32, CPU) by its global name ('blocks.0.mlp.fc.weight.exp_avg', ...).")
      .def("load_parameters", &checkpoint::Reader::load_parameters, arg("model"),
           py::call_guard<py::gil_scoped_release>(),
           "Fills a model's parameters (no engine, no optimizer: inference or fine-tuning).");
}

void bind_functions(py::module_& m) {
  py::class_<checkpoint::PendingSave>(m, "PendingSave", "A save writing in the background; finish() publishes it.")
      .def("finish", &checkpoint::PendingSave::finish, py::call_guard<py::gil_scoped_release>(),
           "Collective: waits for the write and publishes the checkpoint; returns its path.")
      .def_property_readonly("finished", &checkpoint::PendingSave::finished);
  m.def(
      "save_async",
      [](const std::filesystem::path& root, const nn::Module& model, optim::Optimizer& optimizer,
         parallel::DataParallel& engine, comm::Communicator* communicator, int64_t step, const py::object& data,
         const std::map<std::string, double>& hyper, uint64_t seed, int keep_last, const py::object& key,
         bool background) {
        SaveRequest r = make_request(model, optimizer, engine, communicator, step, data, hyper, seed, keep_last, key);
        py::gil_scoped_release release;
        return std::make_unique<checkpoint::PendingSave>(root.string(), r.meta, r.pieces, r.comm, r.options,
                                                         background);
      },
      arg("root"), arg("model"), arg("optimizer"), arg("engine"), arg("communicator"), py::kw_only(), arg("step"),
      arg("data") = py::none(), arg("hyper") = std::map<std::string, double>{}, arg("seed") = 0, arg("keep_last") = 0,
      arg("key") = py::none(), arg("background") = true, py::keep_alive<0, 5>(),
      "Collective: snapshots this rank's state to host memory and writes it (on a background thread unless "
      "background=False); finish() publishes it. dtrain.checkpoint.save is this with background=False, finished.");

  m.def(
      "find_latest",
      [](const std::filesystem::path& root) -> py::object {
        std::string path;
        {
          py::gil_scoped_release r;
          path = checkpoint::find_latest(root.string());
        }
        if (path.empty()) return py::none();
        return py::str(path);
      },
      arg("root"), "The newest complete checkpoint under root, or None.");

  m.def(
      "resume",
      [](checkpoint::Reader& reader, const nn::Module& model, optim::Optimizer& optimizer,
         parallel::DataParallel& engine) {
        check_same_model(reader, model);
        py::gil_scoped_release r;
        return checkpoint::resume_engine(reader, model, optimizer, engine);
      },
      arg("reader"), arg("model"), arg("optimizer"), arg("engine"),
      "Collective: master weights, moments, parameters, optimizer step and f16 loss scaler from the checkpoint. "
      "Returns a sentence when the precision changes ('' otherwise).");
}

}  // namespace

void bind_checkpoint(py::module_& parent) {
  py::module_ m = parent.def_submodule("checkpoint", "Sharded checkpoints: save, find the latest, resume.");
  bind_meta(m);
  bind_reader(m);
  bind_functions(m);
}

}  // namespace dtrain::python
