// What a training loop needs besides the model: optimizers, schedules and
// clipping (dtrain.optim), token data (dtrain.data), and the data-parallel
// engine with its memory ledger (dtrain.parallel). Long calls (optimizer
// steps, the engine's step, loader batches) release the GIL.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include "bindings.h"
#include "dtrain/data/addition_dataset.h"
#include "dtrain/data/byte_tokenizer.h"
#include "dtrain/data/data_loader.h"
#include "dtrain/optim/adamw.h"
#include "dtrain/optim/clip.h"
#include "dtrain/optim/schedule.h"
#include "dtrain/optim/sgd.h"
#include "dtrain/parallel/data_parallel.h"

namespace dtrain::python {
namespace {

using py::arg;

void bind_optim(py::module_& m) {
  py::class_<optim::ParamRef>(m, "ParamRef", "One (value, grad) pair an optimizer updates.")
      .def(py::init([](py::handle value, py::handle grad, const std::string& name) {
             return optim::ParamRef{as_tensor(value, "value", true), as_tensor(grad, "grad"), name};
           }),
           arg("value"), arg("grad"), arg("name") = "")
      .def_readwrite("value", &optim::ParamRef::value)
      .def_readwrite("grad", &optim::ParamRef::grad)
      .def_readwrite("name", &optim::ParamRef::name)
      .def("__repr__", [](const optim::ParamRef& p) { return "dtrain.optim.ParamRef('" + p.name + "')"; });
  py::class_<optim::ParamGroup>(m, "ParamGroup", "Parameters sharing hyper-parameters.")
      .def(py::init(
               [](const std::string& name, std::vector<optim::ParamRef> params, float weight_decay, float lr_scale) {
                 return optim::ParamGroup{name, std::move(params), weight_decay, lr_scale};
               }),
           arg("name"), arg("params"), arg("weight_decay") = 0.0f, arg("lr_scale") = 1.0f)
      .def_readwrite("name", &optim::ParamGroup::name)
      .def_readwrite("params", &optim::ParamGroup::params)
      .def_readwrite("weight_decay", &optim::ParamGroup::weight_decay)
      .def_readwrite("lr_scale", &optim::ParamGroup::lr_scale)
      .def("__repr__", [](const optim::ParamGroup& g) {
        return "dtrain.optim.ParamGroup('" + g.name + "', " + std::to_string(g.params.size()) +
               " tensors, weight_decay=" + py::str(py::float_(g.weight_decay)).cast<std::string>() + ")";
      });
  m.def("param_groups", &optim::param_groups, arg("module"), arg("weight_decay") = 0.0f,
        "'decay' (matrices, embeddings) and 'no_decay' (biases, gains) groups of a module's parameters.");

  py::class_<optim::Optimizer>(m, "Optimizer")
      .def("step", &optim::Optimizer::step, arg("lr"), arg("grad_scale") = 1.0f,
           py::call_guard<py::gil_scoped_release>(), "One update; gradients are multiplied by grad_scale first.")
      .def("zero_grad", &optim::Optimizer::zero_grad, py::call_guard<py::gil_scoped_release>())
      .def("grads", &optim::Optimizer::grads)
      .def("state", &optim::Optimizer::state, "Named live state tensors ('<param>.exp_avg', ...).")
      .def("init_state", &optim::Optimizer::init_state)
      .def_property("steps_done", &optim::Optimizer::steps_done, &optim::Optimizer::set_steps_done)
      .def_property_readonly("groups", py::overload_cast<>(&optim::Optimizer::groups, py::const_));
  py::class_<optim::AdamW, optim::Optimizer>(m, "AdamW", "AdamW with decoupled weight decay, over parameter groups.")
      .def(py::init([](std::vector<optim::ParamGroup> groups, float beta1, float beta2, float eps) {
             return std::make_unique<optim::AdamW>(std::move(groups), optim::AdamWOptions{beta1, beta2, eps});
           }),
           arg("groups"), py::kw_only(), arg("beta1") = 0.9f, arg("beta2") = 0.95f, arg("eps") = 1e-8f);
  py::class_<optim::SGD, optim::Optimizer>(m, "SGD", "SGD with momentum and decoupled weight decay.")
      .def(py::init<std::vector<optim::ParamGroup>, float>(), arg("groups"), py::kw_only(), arg("momentum") = 0.9f)
      .def_property_readonly("momentum", &optim::SGD::momentum);

  py::class_<optim::CosineSchedule>(m, "CosineSchedule", "Linear warm-up to max_lr, cosine decay to min_lr.")
      .def(py::init([](float max_lr, float min_lr, int64_t warmup_steps, int64_t total_steps) {
             return optim::CosineSchedule{max_lr, min_lr, warmup_steps, total_steps};
           }),
           py::kw_only(), arg("max_lr") = 3e-4f, arg("min_lr") = 3e-5f, arg("warmup_steps") = 0, arg("total_steps") = 1)
      .def_readwrite("max_lr", &optim::CosineSchedule::max_lr)
      .def_readwrite("min_lr", &optim::CosineSchedule::min_lr)
      .def_readwrite("warmup_steps", &optim::CosineSchedule::warmup_steps)
      .def_readwrite("total_steps", &optim::CosineSchedule::total_steps)
      .def("lr", &optim::CosineSchedule::lr, arg("step"))
      .def("__call__", &optim::CosineSchedule::lr, arg("step"));

  m.def("grad_norm", &optim::grad_norm, arg("grads"), py::call_guard<py::gil_scoped_release>());
  m.def("clip_scale", &optim::clip_scale, arg("norm"), arg("max_norm"),
        "min(1, max_norm / (norm + 1e-6)); max_norm <= 0 gives 1; a non-finite norm raises.");
  m.def("clip_grad_norm", &optim::clip_grad_norm, arg("grads"), arg("max_norm"),
        py::call_guard<py::gil_scoped_release>());
}

std::vector<uint16_t> to_tokens(py::handle tokens) {
  auto a = py::array_t<uint16_t, py::array::c_style | py::array::forcecast>::ensure(tokens);
  if (!a) throw_type_error("tokens must be an array or sequence of integers in [0, 65535]");
  return std::vector<uint16_t>(a.data(), a.data() + a.size());
}

void bind_data(py::module_& m) {
  using namespace dtrain::data;
  py::class_<TokenSource, std::shared_ptr<TokenSource>>(m, "TokenSource")
      .def_property_readonly("size", &TokenSource::size)
      .def("__len__", &TokenSource::size)
      .def("__repr__", [](const TokenSource& s) { return "dtrain.data.TokenSource('" + s.describe() + "')"; });
  py::class_<MemoryTokens, TokenSource, std::shared_ptr<MemoryTokens>>(m, "MemoryTokens", "Tokens held in memory.")
      .def(py::init([](py::handle tokens, const std::string& label) {
             return std::make_shared<MemoryTokens>(to_tokens(tokens), label);
           }),
           arg("tokens"), arg("label") = "memory");
  py::class_<ShardFile, TokenSource, std::shared_ptr<ShardFile>>(m, "ShardFile", "An llm.c token shard file.")
      .def(py::init<std::string>(), arg("path"));

  py::class_<LoaderPosition>(m, "LoaderPosition")
      .def(py::init([](int64_t epoch, int64_t shard, int64_t offset) {
             return LoaderPosition{epoch, shard, offset};
           }),
           arg("epoch") = 0, arg("shard") = 0, arg("offset") = 0)
      .def_readwrite("epoch", &LoaderPosition::epoch)
      .def_readwrite("shard", &LoaderPosition::shard)
      .def_readwrite("offset", &LoaderPosition::offset)
      .def("__eq__", &LoaderPosition::operator==)
      .def("__repr__", [](const LoaderPosition& p) {
        return "dtrain.data.LoaderPosition(epoch=" + std::to_string(p.epoch) + ", shard=" + std::to_string(p.shard) +
               ", offset=" + std::to_string(p.offset) + ")";
      });

  py::class_<DataLoader>(m, "DataLoader", R"doc(
(B, T) batches of inputs and next-token targets for one rank of a job.

next() returns (inputs, targets), int32 [B/W, T] tensors that the following
call reuses: copy them (.clone()) to keep them. Iterating yields batches forever.)doc")
      .def(py::init([](std::vector<std::shared_ptr<TokenSource>> sources, int64_t global_batch, int64_t seq_len,
                       int64_t rank, int64_t world_size) {
             return std::make_unique<DataLoader>(std::move(sources), global_batch, seq_len, rank, world_size);
           }),
           arg("sources"), arg("global_batch"), arg("seq_len"), py::kw_only(), arg("rank") = 0, arg("world_size") = 1)
      .def_static("from_pattern", &DataLoader::from_pattern, arg("pattern"), arg("global_batch"), arg("seq_len"),
                  py::kw_only(), arg("rank") = 0, arg("world_size") = 1)
      .def("next",
           [](DataLoader& l) {
             py::gil_scoped_release r;
             const Batch& b = l.next();
             return std::make_pair(b.inputs, b.targets);
           })
      .def("__iter__", [](const py::object& self) { return self; })
      .def("__next__",
           [](DataLoader& l) {
             py::gil_scoped_release r;
             const Batch& b = l.next();
             return std::make_pair(b.inputs, b.targets);
           })
      .def_property("position", &DataLoader::position, &DataLoader::set_position)
      .def_property_readonly("batches_per_epoch", &DataLoader::batches_per_epoch)
      .def_property_readonly("global_batch", &DataLoader::global_batch)
      .def_property_readonly("local_batch", &DataLoader::local_batch)
      .def_property_readonly("seq_len", &DataLoader::seq_len)
      .def_property_readonly("rank", &DataLoader::rank)
      .def_property_readonly("world_size", &DataLoader::world_size);

  py::class_<AdditionDataset::Score>(m, "AdditionScore")
      .def_readonly("exact", &AdditionDataset::Score::exact)
      .def_readonly("digits", &AdditionDataset::Score::digits)
      .def_readonly("problems", &AdditionDataset::Score::problems)
      .def("__repr__", [](const AdditionDataset::Score& s) {
        return "dtrain.data.AdditionScore(exact=" + std::to_string(s.exact) + ", digits=" + std::to_string(s.digits) +
               ", problems=" + std::to_string(s.problems) + ")";
      });
  py::class_<AdditionDataset>(m, "AdditionDataset", "The built-in integer additions ('07+58=065\\n'), byte tokens.")
      .def(py::init<int>(), arg("digits") = 2)
      .def_property_readonly("digits", &AdditionDataset::digits)
      .def_property_readonly("line_length", &AdditionDataset::line_length)
      .def("problem_text", &AdditionDataset::problem_text)
      .def("prompt_text", &AdditionDataset::prompt_text)
      .def("answer_text", &AdditionDataset::answer_text)
      .def("is_held_out", &AdditionDataset::is_held_out)
      .def("train_tokens", &AdditionDataset::train_tokens, arg("num_problems"), arg("seed"))
      .def("held_out", &AdditionDataset::held_out, arg("count"), arg("seed"))
      .def("held_out_tokens", &AdditionDataset::held_out_tokens, arg("num_problems"), arg("seed"))
      .def("evaluate", &AdditionDataset::evaluate, arg("pairs"), arg("decode"),
           "Scores decode(prompts, max_new_tokens) -> continuations on the given pairs.")
      .def("baseline", &AdditionDataset::baseline, arg("pairs"));

  m.def("encode_bytes", &encode_bytes_i32, arg("text"), "Byte tokens of a string (vocabulary 256).");
  m.def("decode_bytes", &decode_bytes, arg("tokens"));
  m.def("read_token_shard", &read_token_shard, arg("path"));
  m.def("write_token_shard", &write_token_shard, arg("path"), arg("tokens"));
  m.def("tokenize_file_to_shards", &tokenize_file_to_shards, arg("text_path"), arg("out_prefix"),
        arg("tokens_per_shard"));
}

void bind_parallel(py::module_& m) {
  using namespace dtrain::parallel;
  py::enum_<Precision>(m, "Precision")
      .value("f32", Precision::f32)
      .value("bf16", Precision::bf16)
      .value("f16", Precision::f16);

  py::class_<StepResult>(m, "StepResult")
      .def_readonly("grad_norm", &StepResult::grad_norm)
      .def_readonly("skipped", &StepResult::skipped)
      .def_readonly("loss_scale", &StepResult::loss_scale)
      .def("__repr__", [](const StepResult& r) {
        return "dtrain.parallel.StepResult(grad_norm=" + std::to_string(r.grad_norm) +
               ", skipped=" + (r.skipped ? "True" : "False") + ", loss_scale=" + std::to_string(r.loss_scale) + ")";
      });
  py::class_<GroupInfo>(m, "GroupInfo")
      .def_readonly("name", &GroupInfo::name)
      .def_readonly("params", &GroupInfo::params)
      .def_readonly("numel", &GroupInfo::numel)
      .def_readonly("padded_numel", &GroupInfo::padded_numel)
      .def_readonly("shard_offset", &GroupInfo::shard_offset)
      .def_readonly("shard_numel", &GroupInfo::shard_numel);
  py::class_<MemoryLedger>(m, "MemoryLedger", "Bytes one rank holds per kind of training state.")
      .def_readonly("parameters", &MemoryLedger::parameters)
      .def_readonly("gradients", &MemoryLedger::gradients)
      .def_readonly("optimizer_state", &MemoryLedger::optimizer_state)
      .def_readonly("comm_buffers", &MemoryLedger::comm_buffers)
      .def_readonly("activations", &MemoryLedger::activations)
      .def_property_readonly("model_state", &MemoryLedger::model_state)
      .def("__repr__", [](const MemoryLedger& l) {
        return "dtrain.parallel.MemoryLedger(parameters=" + std::to_string(l.parameters) +
               ", gradients=" + std::to_string(l.gradients) + ", optimizer_state=" + std::to_string(l.optimizer_state) +
               ", comm_buffers=" + std::to_string(l.comm_buffers) + ", activations=" + std::to_string(l.activations) +
               ")";
      });
  m.def("predict_model_state", &predict_model_state, arg("stage"), arg("num_parameters"), arg("world_size"),
        arg("precision") = Precision::f32, "The ZeRO paper's per-rank model-state bytes.");
  m.def("format_ledger", &format_ledger, arg("measured"), arg("predicted"), arg("stage"), arg("world_size"));

  py::class_<DataParallel>(m, "DataParallel", R"doc(
The data-parallel engine (ZeRO stages 0-3) over a communicator.

Build it before the optimizer (optimizer over engine.param_groups(...)); run
grad_accumulation forward/backward passes with grad_scale=engine.grad_scale,
then engine.step(optimizer, lr, max_grad_norm). Not thread-safe.)doc")
      .def(py::init([](nn::Module& model, std::shared_ptr<comm::Communicator> communicator, int stage,
                       int grad_accumulation, const py::object& precision, double first_bucket_mb, double bucket_mb,
                       bool overlap, int prefetch_depth, bool broadcast_parameters, bool check_consistency, bool trace,
                       float initial_loss_scale) {
             DataParallelOptions o;
             o.stage = stage;
             o.grad_accumulation = grad_accumulation;
             o.precision = py::isinstance<py::str>(precision) ? parse_precision(precision.cast<std::string>())
                                                              : precision.cast<Precision>();
             o.first_bucket_bytes = std::max<int64_t>(1, static_cast<int64_t>(first_bucket_mb * 1024 * 1024));
             o.bucket_bytes = std::max<int64_t>(1, static_cast<int64_t>(bucket_mb * 1024 * 1024));
             o.overlap = overlap;
             o.prefetch_depth = prefetch_depth;
             o.broadcast_parameters = broadcast_parameters;
             o.check_consistency = check_consistency;
             o.trace = trace;
             o.initial_loss_scale = initial_loss_scale;
             py::gil_scoped_release r;
             return std::make_unique<DataParallel>(model, std::move(communicator), o);
           }),
           arg("model"), arg("communicator"), py::kw_only(), arg("stage") = 0, arg("grad_accumulation") = 1,
           arg("precision") = "f32", arg("first_bucket_mb") = 1.0, arg("bucket_mb") = 25.0, arg("overlap") = true,
           arg("prefetch_depth") = 1, arg("broadcast_parameters") = true, arg("check_consistency") = true,
           arg("trace") = false, arg("initial_loss_scale") = 65536.0f, py::keep_alive<1, 2>(), py::keep_alive<1, 3>())
      .def_property_readonly("rank", &DataParallel::rank)
      .def_property_readonly("world_size", &DataParallel::world_size)
      .def_property_readonly("stage", [](const DataParallel& d) { return d.options().stage; })
      .def_property_readonly("grad_accumulation", [](const DataParallel& d) { return d.options().grad_accumulation; })
      .def_property_readonly("grad_scale", &DataParallel::grad_scale,
                             "What to pass as the model's grad_scale (1/accumulation, x loss scale under f16).")
      .def("param_groups", &DataParallel::param_groups, arg("weight_decay") = 0.0f)
      .def("step", &DataParallel::step, arg("optimizer"), arg("lr"), arg("max_grad_norm") = 0.0f,
           py::call_guard<py::gil_scoped_release>(),
           "Clip, update, re-gather and zero the gradients after grad_accumulation backward passes.")
      .def("wait_for_parameters", &DataParallel::wait_for_parameters, py::call_guard<py::gil_scoped_release>())
      .def("average", &DataParallel::average, arg("value"), py::call_guard<py::gil_scoped_release>(),
           "Mean of a number over the ranks.")
      .def("full_parameters", &DataParallel::full_parameters, py::call_guard<py::gil_scoped_release>(),
           "Every parameter in full, (dotted name, f32 CPU tensor); collective.")
      .def_property_readonly("groups", &DataParallel::groups)
      .def("describe_plan", &DataParallel::describe_plan)
      .def_property_readonly("num_parameters", &DataParallel::num_parameters)
      .def(
          "ledger", [](const DataParallel& d, const optim::Optimizer* opt) { return d.ledger(opt); },
          arg("optimizer") = nullptr, "Bytes this rank holds now (pass the optimizer to count its state).")
      .def("predicted", &DataParallel::predicted)
      .def(
          "trace_jsonl", [](DataParallel& d) { return d.trace() ? d.trace()->to_jsonl() : std::string(); },
          "The engine's trace as JSON Lines (empty unless trace=True).");
}

}  // namespace

void bind_training(py::module_& parent) {
  py::module_ optim = parent.def_submodule("optim", "Optimizers, schedules and gradient clipping.");
  bind_optim(optim);
  py::module_ data = parent.def_submodule("data", "Token sources, the data loader, the built-in additions.");
  bind_data(data);
  py::module_ parallel = parent.def_submodule("parallel", "The data-parallel engine and the memory ledger.");
  bind_parallel(parallel);
}

}  // namespace dtrain::python
