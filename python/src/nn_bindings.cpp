// dtrain.nn for Python: Parameter, Module (subclassable from Python), the
// built-in layers, the GPT model and generation.
//
// Ownership: modules made in Python are owned by their Python objects; a
// child registered with add_module is kept alive by its parent (keep_alive),
// and children reached through a model (model.blocks[0].attn) are references
// that keep the model alive. Layer outputs are the layer's own buffers
// (valid until its next forward), returned as tensor handles, as in C++.
//
// Python-defined modules subclass dtrain.nn.Module (python/dtrain/nn.py adds
// attribute registration on top of _C.nn.Module): they register children
// and parameters, and write forward/backward from dtrain's layers and ops.
// Engine hooks (grad_ready and friends) then see their parameters like any
// C++ module's.
#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include <random>
#include <sstream>

#include "bindings.h"
#include "dtrain/nn/gpt.h"
#include "dtrain/nn/init.h"
#include "dtrain/nn/layers.h"

namespace dtrain::python {
namespace {

using namespace dtrain::nn;

// Makes Module's protected registration API callable from Python: the
// using-declarations give public names to Module's members, which are then
// called through member pointers on any Module.
class PublicModule : public Module {
 public:
  using Module::add_module;
  using Module::add_parameter;
  using Module::add_shared_parameter;
  using Module::grad_ready;
  using Module::run_hooks;
};

// The class Python subclasses instantiate.
class PyModule : public Module {
 public:
  using Module::Module;
  void release_activations() override { PYBIND11_OVERRIDE(void, Module, release_activations); }
};

py::tuple shape_tuple(const Shape& s) {
  py::tuple t(s.size());
  for (size_t i = 0; i < s.size(); ++i) t[i] = s[i];
  return t;
}

std::string parameter_repr(const Parameter& p) {
  std::ostringstream os;
  os << "dtrain.nn.Parameter(name='" << p.name() << "', shape=" << py::str(shape_tuple(p.shape())).cast<std::string>()
     << ", dtype=" << dtype_name(p.dtype()) << ", device='" << p.device().str() << "'"
     << (p.weight_decay() ? ", weight_decay=True" : "") << ")";
  return os.str();
}

// "GPT(\n  (embed): Embedding(...)\n ...)" like torch, with parameter shapes.
std::string module_repr(const Module& m, int indent) {
  std::ostringstream os;
  os << m.type_name() << "(";
  const std::string pad(static_cast<size_t>(indent + 2), ' ');
  bool any = false;
  for (Parameter* p : m.direct_parameters()) {
    os << "\n"
       << pad << p->name() << ": " << dtype_name(p->dtype()) << shape_str(p->shape()) << " on " << p->device().str();
    any = true;
  }
  for (const auto& [name, child] : m.children()) {
    os << "\n" << pad << "(" << name << "): " << module_repr(*child, indent + 2);
    any = true;
  }
  if (any) os << "\n" << std::string(static_cast<size_t>(indent), ' ');
  os << ")";
  return os.str();
}

Tensor dx_arg(py::handle dx) {
  return as_optional_tensor(dx, "dx", true);
}

// Copies an array into a parameter's existing storage (same shape), so views
// an engine made of that storage stay valid.
void copy_into(const Tensor& dst, py::handle src, const char* what) {
  Tensor s = as_tensor(src, what);
  if (s.shape() != dst.shape()) {
    throw_value_error(std::string("Parameter.") + what + " has the wrong shape: expected " + shape_str(dst.shape()) +
                      ", got " + shape_str(s.shape()));
  }
  Tensor d = dst;
  d.copy_(s);
}

void bind_parameter(py::module_& m) {
  py::class_<Parameter>(m, "Parameter", "One named trainable tensor of a module: value and grad.")
      .def_property_readonly("name", &Parameter::name, "Local name inside the owning module.")
      .def_property_readonly("shape", [](const Parameter& p) { return shape_tuple(p.shape()); })
      .def_property_readonly("dtype", &Parameter::dtype)
      .def_property_readonly("device", &Parameter::device)
      .def_property_readonly("numel", &Parameter::numel)
      .def_property_readonly("weight_decay", &Parameter::weight_decay)
      .def_property(
          "value", [](const Parameter& p) { return p.value; },
          [](Parameter& p, py::handle v) { copy_into(p.require_value(), v, "value"); },
          "The weights (a tensor sharing the parameter's memory). Assigning an array copies its values in.")
      .def_property(
          "grad", [](const Parameter& p) { return p.grad; },
          [](Parameter& p, py::handle g) { copy_into(p.require_grad(), g, "grad"); },
          "The gradient (shared memory). Assigning an array copies its values in.")
      .def("__repr__", &parameter_repr);
}

void bind_module(py::module_& m) {
  py::enum_<HookPoint>(m, "HookPoint")
      .value("pre_forward", HookPoint::pre_forward)
      .value("post_forward", HookPoint::post_forward)
      .value("pre_backward", HookPoint::pre_backward)
      .value("post_backward", HookPoint::post_backward);

  py::class_<Module, PyModule>(m, "Module", R"doc(
A node of the model tree owning named parameters and child modules.

No autograd: every module has an explicit forward and backward; backward adds
into the input gradient it is given and into its parameters' grads, so zero
them first (zero_grad). Subclass dtrain.nn.Module to build models in Python.)doc")
      .def(py::init([](const std::string& type_name, const Device& device) {
             return std::make_unique<PyModule>(type_name, device);
           }),
           py::arg("type_name") = "Module", py::arg("device") = Device::cpu())
      .def_property_readonly("type_name", &Module::type_name)
      .def_property_readonly("device", &Module::device)
      .def("children", &Module::children, py::return_value_policy::reference_internal)
      .def("named_modules", &Module::named_modules, py::return_value_policy::reference_internal,
           "This module ('') and all descendants, pre-order, with dotted names.")
      .def(
          "named_parameters",
          [](const Module& mod) {
            std::vector<std::pair<std::string, Parameter*>> out;
            for (const auto& np : mod.named_parameters()) out.emplace_back(np.name, np.param);
            return out;
          },
          py::return_value_policy::reference_internal,
          "(dotted name, Parameter) for every parameter of the subtree, in a stable order.")
      .def("parameters", &Module::parameters, py::return_value_policy::reference_internal)
      .def("parameter", &Module::parameter, py::arg("name"), py::return_value_policy::reference_internal)
      .def("direct_parameters", &Module::direct_parameters, py::return_value_policy::reference_internal)
      .def_property_readonly("num_parameters", &Module::num_parameters)
      .def("zero_grad", &Module::zero_grad, py::call_guard<py::gil_scoped_release>())
      .def("release_activations", &Module::release_activations)
      .def("add_hook", &Module::add_hook, py::arg("point"), py::arg("hook"),
           "Calls hook(module) at the point; returns an id for remove_hook.")
      .def("add_grad_ready_hook", &Module::add_grad_ready_hook, py::arg("hook"),
           "Calls hook(parameter) when a parameter's gradient is complete for this backward.")
      .def("remove_hook", &Module::remove_hook, py::arg("id"))
      // The registration API, for modules written in Python.
      .def(
          "add_parameter",
          [](Module& self, const std::string& name, py::handle value, bool weight_decay) -> Parameter& {
            Tensor v = as_tensor(value, "value").clone();  // the module owns its storage
            return (self.*(&PublicModule::add_parameter))(name, v, weight_decay);
          },
          py::arg("name"), py::arg("value"), py::arg("weight_decay") = false,
          py::return_value_policy::reference_internal,
          "Creates a parameter (a copy of value) with a zeroed gradient; returns it.")
      .def(
          "add_module",
          [](Module& self, const std::string& name, Module& child) {
            (self.*(&PublicModule::add_module))(name, child);
          },
          py::arg("name"), py::arg("child"), py::keep_alive<1, 3>(), "Registers a child module.")
      .def(
          "run_hooks", [](Module& self, HookPoint p) { (self.*(&PublicModule::run_hooks))(p); }, py::arg("point"),
          "Runs this module's hooks (call at the start/end of forward and backward).")
      .def(
          "grad_ready", [](Module& self, Parameter& p) { (self.*(&PublicModule::grad_ready))(p); }, py::arg("param"),
          "Announces that param's gradient is complete (for parameters added in Python).")
      .def("__repr__", [](const Module& mod) { return module_repr(mod, 0); });

  py::class_<ModuleList, Module>(m, "ModuleList")
      .def(py::init<Device>(), py::arg("device") = Device::cpu())
      .def("append", &ModuleList::append, py::arg("module"), py::keep_alive<1, 2>())
      .def("__len__", &ModuleList::size);
}

void bind_layers(py::module_& m) {
  py::class_<Linear, Module>(m, "Linear", "out = x @ weight^T + bias (weights start at zero: see init_normal).")
      .def(py::init<int64_t, int64_t, bool, Device>(), py::arg("in_features"), py::arg("out_features"),
           py::arg("bias") = true, py::arg("device") = Device::cpu())
      .def(
          "forward",
          [](Linear& l, py::handle x) {
            Tensor t = as_tensor(x, "x");
            py::gil_scoped_release r;
            return l.forward(t);
          },
          py::arg("x"))
      .def("__call__",
           [](Linear& l, py::handle x) {
             Tensor t = as_tensor(x, "x");
             py::gil_scoped_release r;
             return l.forward(t);
           })
      .def(
          "backward",
          [](Linear& l, py::handle dout, py::handle dx) {
            Tensor d = as_tensor(dout, "dout"), tdx = dx_arg(dx);
            py::gil_scoped_release r;
            l.backward(d, tdx);
          },
          py::arg("dout"), py::arg("dx") = py::none(), "dx += d/dx (None: skipped); weight.grad, bias.grad += ...")
      .def_property_readonly(
          "weight", [](Linear& l) { return &l.weight; }, py::return_value_policy::reference_internal)
      .def_property_readonly(
          "bias", [](Linear& l) { return l.bias; }, py::return_value_policy::reference_internal)
      .def_property_readonly("in_features", &Linear::in_features)
      .def_property_readonly("out_features", &Linear::out_features);

  py::class_<LayerNorm, Module>(m, "LayerNorm")
      .def(py::init<int64_t, Device, float>(), py::arg("channels"), py::arg("device") = Device::cpu(),
           py::arg("eps") = 1e-5f)
      .def(
          "forward",
          [](LayerNorm& l, py::handle x) {
            Tensor t = as_tensor(x, "x");
            py::gil_scoped_release r;
            return l.forward(t);
          },
          py::arg("x"))
      .def(
          "backward",
          [](LayerNorm& l, py::handle dout, py::handle dx) {
            Tensor d = as_tensor(dout, "dout"), tdx = dx_arg(dx);
            py::gil_scoped_release r;
            l.backward(d, tdx);
          },
          py::arg("dout"), py::arg("dx") = py::none())
      .def_property_readonly(
          "weight", [](LayerNorm& l) { return &l.weight; }, py::return_value_policy::reference_internal)
      .def_property_readonly(
          "bias", [](LayerNorm& l) { return &l.bias; }, py::return_value_policy::reference_internal);

  py::class_<Embedding, Module>(m, "Embedding")
      .def(py::init<int64_t, int64_t, int64_t, Device>(), py::arg("vocab_size"), py::arg("max_seq_len"),
           py::arg("channels"), py::arg("device") = Device::cpu())
      .def(
          "forward",
          [](Embedding& l, py::handle tokens) {
            Tensor t = as_tensor(tokens, "tokens");
            py::gil_scoped_release r;
            return l.forward(t);
          },
          py::arg("tokens"))
      .def(
          "backward",
          [](Embedding& l, py::handle dout) {
            Tensor d = as_tensor(dout, "dout");
            py::gil_scoped_release r;
            l.backward(d);
          },
          py::arg("dout"))
      .def_property_readonly(
          "wte", [](Embedding& l) { return &l.wte; }, py::return_value_policy::reference_internal)
      .def_property_readonly(
          "wpe", [](Embedding& l) { return &l.wpe; }, py::return_value_policy::reference_internal);

  // Attention, MLP and Block share one shape: forward(x) -> y, backward(dout, dx).
  auto bind_xy = [&m](auto cls) {
    using T = typename decltype(cls)::type;
    cls.def(
           "forward",
           [](T& l, py::handle x) {
             Tensor t = as_tensor(x, "x");
             py::gil_scoped_release r;
             return l.forward(t);
           },
           py::arg("x"))
        .def(
            "backward",
            [](T& l, py::handle dout, py::handle dx) {
              Tensor d = as_tensor(dout, "dout"), tdx = dx_arg(dx);
              py::gil_scoped_release r;
              l.backward(d, tdx);
            },
            py::arg("dout"), py::arg("dx") = py::none());
    (void)m;
  };
  py::class_<CausalSelfAttention, Module> attn(m, "CausalSelfAttention");
  attn.def(py::init<int64_t, int64_t, Device>(), py::arg("channels"), py::arg("num_heads"),
           py::arg("device") = Device::cpu())
      .def_property_readonly(
          "qkv", [](CausalSelfAttention& a) { return &a.qkv; }, py::return_value_policy::reference_internal)
      .def_property_readonly(
          "proj", [](CausalSelfAttention& a) { return &a.proj; }, py::return_value_policy::reference_internal)
      .def_property_readonly("num_heads", &CausalSelfAttention::num_heads);
  bind_xy(attn);
  py::class_<MLP, Module> mlp(m, "MLP");
  mlp.def(py::init<int64_t, int64_t, Device>(), py::arg("channels"), py::arg("hidden"),
          py::arg("device") = Device::cpu())
      .def_property_readonly(
          "fc", [](MLP& l) { return &l.fc; }, py::return_value_policy::reference_internal)
      .def_property_readonly(
          "proj", [](MLP& l) { return &l.proj; }, py::return_value_policy::reference_internal);
  bind_xy(mlp);
  py::class_<Block, Module> block(m, "Block");
  block
      .def(py::init<int64_t, int64_t, Device>(), py::arg("channels"), py::arg("num_heads"),
           py::arg("device") = Device::cpu())
      .def_property("checkpointing", &Block::checkpointing, &Block::set_checkpointing)
      .def_property_readonly(
          "ln1", [](Block& b) { return &b.ln1; }, py::return_value_policy::reference_internal)
      .def_property_readonly(
          "attn", [](Block& b) { return &b.attn; }, py::return_value_policy::reference_internal)
      .def_property_readonly(
          "ln2", [](Block& b) { return &b.ln2; }, py::return_value_policy::reference_internal)
      .def_property_readonly(
          "mlp", [](Block& b) { return &b.mlp; }, py::return_value_policy::reference_internal);
  bind_xy(block);

  m.def(
      "init_normal",
      [](py::handle t, float mean, float std, uint64_t seed, const py::object& stream) {
        Tensor x = as_tensor(t, "tensor", true);
        const uint64_t s =
            py::isinstance<py::str>(stream) ? stream_id(stream.cast<std::string>()) : stream.cast<uint64_t>();
        init_normal(x, mean, std, seed, s);
      },
      py::arg("tensor"), py::arg("mean") = 0.0f, py::arg("std") = 0.02f, py::arg("seed") = 1337, py::arg("stream") = 0,
      "Fills tensor with N(mean, std) from stream (seed, stream); stream may be a name.");
}

py::object gpt_call(GPT& g, py::handle tokens, py::handle targets, float grad_scale, int32_t ignore_index) {
  Tensor t = as_tensor(tokens, "tokens");
  if (targets.is_none()) {
    Tensor logits;
    {
      py::gil_scoped_release r;
      logits = g.forward(t);
    }
    return py::cast(logits);
  }
  Tensor y = as_tensor(targets, "targets");
  float loss;
  {
    py::gil_scoped_release r;
    loss = g.forward(t, y, grad_scale, ignore_index);
  }
  return py::float_(loss);
}

// GPTConfig's precision keywords: `dtype` sets both dtypes (as the C++
// library requires them equal); param_dtype / compute_dtype set one each and
// validate() checks that they agree. Each accepts a DType or a name.
void set_config_dtypes(GPTConfig& c, const py::object& dtype, const py::object& param_dtype,
                       const py::object& compute_dtype) {
  if (!dtype.is_none()) {
    if (!param_dtype.is_none() || !compute_dtype.is_none()) {
      throw_value_error("GPTConfig: pass dtype (sets both) or param_dtype/compute_dtype, not both");
    }
    c.param_dtype = c.compute_dtype = to_dtype(dtype);
  }
  if (!param_dtype.is_none()) c.param_dtype = to_dtype(param_dtype);
  if (!compute_dtype.is_none()) c.compute_dtype = to_dtype(compute_dtype);
}

void bind_gpt(py::module_& m) {
  py::class_<GPTConfig>(m, "GPTConfig", R"doc(
GPT-2 family sizes; GPTConfig.preset('tiny' | 'gpt2-124m' | 'gpt2-350m').

dtype ('f32', 'bf16', 'f16' or a dtrain.DType) is the dtype of parameters,
activations and gradients and of the matmuls (param_dtype and compute_dtype,
which must be equal). recompute: 0 keeps every activation, 1 recomputes each
MLP's GELU in backward, 2 also every layernorm output (same losses, bit for
bit; less activation memory).)doc")
      .def(py::init([](int64_t n_layer, int64_t n_head, int64_t n_embd, int64_t vocab_size, int64_t max_seq_len,
                       bool checkpoint_activations, int recompute, const py::object& dtype,
                       const py::object& param_dtype, const py::object& compute_dtype) {
             GPTConfig c;
             c.n_layer = n_layer;
             c.n_head = n_head;
             c.n_embd = n_embd;
             c.vocab_size = vocab_size;
             c.max_seq_len = max_seq_len;
             c.checkpoint_activations = checkpoint_activations;
             c.recompute = recompute;
             set_config_dtypes(c, dtype, param_dtype, compute_dtype);
             return c;
           }),
           py::kw_only(), py::arg("n_layer") = 2, py::arg("n_head") = 4, py::arg("n_embd") = 128,
           py::arg("vocab_size") = 256, py::arg("max_seq_len") = 128, py::arg("checkpoint_activations") = false,
           py::arg("recompute") = 0, py::arg("dtype") = py::none(), py::arg("param_dtype") = py::none(),
           py::arg("compute_dtype") = py::none())
      .def_static("preset", &GPTConfig::preset, py::arg("name"))
      .def_static("preset_names", &GPTConfig::preset_names)
      .def_readwrite("n_layer", &GPTConfig::n_layer)
      .def_readwrite("n_head", &GPTConfig::n_head)
      .def_readwrite("n_embd", &GPTConfig::n_embd)
      .def_readwrite("vocab_size", &GPTConfig::vocab_size)
      .def_readwrite("max_seq_len", &GPTConfig::max_seq_len)
      .def_readwrite("checkpoint_activations", &GPTConfig::checkpoint_activations)
      .def_readwrite("recompute", &GPTConfig::recompute, "0, 1 (the MLP's GELU) or 2 (also the layernorms).")
      .def_property(
          "param_dtype", [](const GPTConfig& c) { return c.param_dtype; },
          [](GPTConfig& c, const py::object& d) { c.param_dtype = to_dtype(d); })
      .def_property(
          "compute_dtype", [](const GPTConfig& c) { return c.compute_dtype; },
          [](GPTConfig& c, const py::object& d) { c.compute_dtype = to_dtype(d); })
      .def_property(
          "dtype",
          [](const GPTConfig& c) {
            if (c.param_dtype != c.compute_dtype) {
              throw_value_error(std::string("GPTConfig: param_dtype ") + dtype_name(c.param_dtype) +
                                " and compute_dtype " + dtype_name(c.compute_dtype) + " differ; read them one by one");
            }
            return c.param_dtype;
          },
          [](GPTConfig& c, const py::object& d) { c.param_dtype = c.compute_dtype = to_dtype(d); },
          "param_dtype and compute_dtype at once (they must be equal).")
      .def("validate", &GPTConfig::validate)
      .def("__str__", &GPTConfig::str)
      .def("__repr__", [](const GPTConfig& c) { return "dtrain.nn.GPTConfig(" + c.str() + ")"; });

  // Reached as model.head; registered so it has a Python type.
  py::class_<TiedLMHead, Module> tied_head(m, "TiedLMHead", "The output head tied to the token embedding.");
  (void)tied_head;

  py::class_<GPT, Module>(m, "GPT", R"doc(
GPT-2 family language model (tied output head, GPT-2 initialisation).

model(tokens) -> logits [B, T, V]; model(tokens, targets) -> mean loss, after
which model.backward() accumulates every parameter's gradient. Tokens and
targets are int32 arrays [B, T].)doc")
      .def(py::init<const GPTConfig&, Device, uint64_t>(), py::arg("config"), py::arg("device") = Device::cpu(),
           py::arg("seed") = 1337)
      .def_property_readonly("config", &GPT::config)
      .def("forward", &gpt_call, py::arg("tokens"), py::arg("targets") = py::none(), py::kw_only(),
           py::arg("grad_scale") = 1.0f, py::arg("ignore_index") = -100)
      .def("__call__", &gpt_call, py::arg("tokens"), py::arg("targets") = py::none(), py::kw_only(),
           py::arg("grad_scale") = 1.0f, py::arg("ignore_index") = -100)
      .def("backward", &GPT::backward, py::call_guard<py::gil_scoped_release>(),
           "Accumulates every parameter's gradient for the last training forward.")
      .def("set_checkpointing", &GPT::set_checkpointing, py::arg("on"))
      .def("init_weights", &GPT::init_weights, py::arg("seed"))
      .def("flops_per_token", &GPT::flops_per_token, py::arg("seq_len"))
      .def_property_readonly(
          "embed", [](GPT& g) { return &g.embed; }, py::return_value_policy::reference_internal)
      .def_property_readonly(
          "ln_f", [](GPT& g) { return &g.ln_f; }, py::return_value_policy::reference_internal)
      .def_property_readonly(
          "blocks",
          [](GPT& g) {
            std::vector<Block*> out;
            for (auto& b : g.blocks) out.push_back(b.get());
            return out;
          },
          py::return_value_policy::reference_internal);

  m.def(
      "generate",
      [](GPT& model, const std::vector<int32_t>& prompt, int64_t max_new_tokens, float temperature, uint64_t seed,
         int32_t stop_token) {
        std::mt19937_64 rng(seed);
        py::gil_scoped_release r;
        return generate(model, prompt, max_new_tokens, temperature, rng, stop_token);
      },
      py::arg("model"), py::arg("prompt"), py::arg("max_new_tokens"), py::arg("temperature") = 0.0f,
      py::arg("seed") = 1337, py::arg("stop_token") = -1,
      "Continues a prompt (token list); greedy when temperature <= 0. Returns the new tokens.");
  m.def(
      "generate_greedy_batch",
      [](GPT& model, const std::vector<std::vector<int32_t>>& prompts, int64_t max_new_tokens, int32_t stop_token) {
        py::gil_scoped_release r;
        return generate_greedy_batch(model, prompts, max_new_tokens, stop_token);
      },
      py::arg("model"), py::arg("prompts"), py::arg("max_new_tokens"), py::arg("stop_token") = -1);
}

}  // namespace

void bind_nn(py::module_& parent) {
  py::module_ m = parent.def_submodule("nn", "Modules, layers and the GPT model.");
  bind_parameter(m);
  bind_module(m);
  bind_layers(m);
  bind_gpt(m);
}

}  // namespace dtrain::python
