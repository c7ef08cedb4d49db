// Module: a node of the model tree, owning named Parameters and child modules.
//
// There is no autograd: every module has an explicit forward and backward
// built from the op set (include/dtrain/ops.h) and keeps what its backward
// needs (its activations) in tensors it owns and reuses from step to step
// while the input shape stays the same. Backward follows the op-set
// convention: it ADDS into the input gradient it is given (`dx += ...`) and
// into its parameters' `grad`, so callers zero gradients first (zero_grad).
//
// Hooks (what the data-parallel engine builds on):
//  - pre_forward / post_forward / pre_backward / post_backward: called with the
//    module right before/after it runs (also when a checkpointed block
//    recomputes its forward inside backward). A ZeRO-3 engine gathers the
//    module's direct_parameters() + shared_parameters() in pre_* and frees
//    them in post_*.
//  - grad_ready: called with a Parameter as soon as its gradient for this
//    backward is complete, exactly once per parameter per backward, in the
//    order gradients become ready. A hook registered on a module fires for
//    every parameter of its subtree (register on the root to see them all).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dtrain/nn/parameter.h"
#include "dtrain/tensor.h"

namespace dtrain::nn {

enum class HookPoint { pre_forward, post_forward, pre_backward, post_backward };

// The constant a built-in layer starts a parameter at (a model's
// init_weights then draws the random ones).
enum class ParamInit { zeros, ones };

// While an object of this class lives on a thread, the built-in layers that
// thread constructs create their parameters without storage (shape, dtype
// and device only), and GPT skips drawing its weights. Such a "deferred"
// model costs no parameter memory: the data-parallel engine gives each rank
// storage for what it keeps (at ZeRO-3 only its shard) and fills it from
// Module::init_parameter_slice, which is what lets a model larger than one
// rank's memory start. Scopes nest.
//
//   std::optional<nn::DeferredInit> deferred;
//   if (zero_stage == 3) deferred.emplace();
//   nn::GPT model(config, device, seed);
//   deferred.reset();
//   parallel::DataParallel dp(model, comm, options);  // initialises the shards
class DeferredInit {
 public:
  DeferredInit();
  ~DeferredInit();
  DeferredInit(const DeferredInit&) = delete;
  DeferredInit& operator=(const DeferredInit&) = delete;
  static bool active();
};

struct NamedParameter {
  std::string name;  // dotted path from the module asked, e.g. "blocks.0.attn.qkv.weight"
  Parameter* param;
};

class Module {
 public:
  using ModuleHook = std::function<void(Module&)>;
  using GradReadyHook = std::function<void(Parameter&)>;

  // `dtype` is the floating dtype of the module's parameters, and so of its
  // activations and gradients (bf16/f16 models: see GPTConfig). Statistics
  // the ops keep in f32 (layernorm mean/rstd, attention lse, losses) stay f32.
  explicit Module(std::string type_name, Device device = Device::cpu(), DType dtype = DType::f32);
  virtual ~Module();
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  const std::string& type_name() const { return type_name_; }
  Device device() const { return device_; }
  DType dtype() const { return dtype_; }
  Module* parent() const { return parent_; }

  // ---- tree -----------------------------------------------------------------
  const std::vector<std::pair<std::string, Module*>>& children() const { return children_; }
  // This module ("") and all descendants, pre-order, with dotted names.
  std::vector<std::pair<std::string, Module*>> named_modules();

  // ---- parameters -----------------------------------------------------------
  // Parameters this module owns (not its children's), in registration order.
  std::vector<Parameter*> direct_parameters() const;
  // Parameters this module uses but another module owns (tied weights: the
  // GPT output head uses the token embedding). Not part of named_parameters.
  const std::vector<Parameter*>& shared_parameters() const { return shared_; }
  // Every parameter of the subtree exactly once, in a stable order (own
  // parameters first, then children in registration order), with dotted names.
  std::vector<NamedParameter> named_parameters() const;
  std::vector<Parameter*> parameters() const;
  // Looks a parameter up by dotted name; throws naming the known ones if absent.
  Parameter& parameter(const std::string& dotted_name) const;
  int64_t num_parameters() const;
  // Sets every gradient of the subtree to zero (backward accumulates).
  void zero_grad();

  // ---- hooks ----------------------------------------------------------------
  // Returns an id for remove_hook. Hooks run in registration order.
  int add_hook(HookPoint point, ModuleHook hook);
  int add_grad_ready_hook(GradReadyHook hook);
  void remove_hook(int id);

  // How parameter `name` (dotted, from this module) starts: fills `out` with
  // elements [first_element, first_element + out.numel()) of its initial
  // value, flattened, in out's dtype, the same bits whatever the range (so a
  // shard equals the same range of the whole). The data-parallel engine calls
  // it on the root for parameters built under DeferredInit. The default
  // throws: a model built deferred must say how it initialises (GPT does).
  virtual void init_parameter_slice(const std::string& name, Tensor& out, int64_t first_element) const;

  // Frees the activations kept for backward in the subtree (activation
  // checkpointing; also handy after evaluation). The next forward reallocates.
  virtual void release_activations();

 protected:
  // Creates a parameter owned by this module with a zeroed gradient of the same shape.
  Parameter& add_parameter(const std::string& name, Tensor value, bool weight_decay);
  // The same for a parameter of this module's device and dtype, filled with
  // `init` (without storage under DeferredInit).
  Parameter& create_parameter(const std::string& name, const Shape& shape, ParamInit init, bool weight_decay);
  // Registers a member module as a child (the caller keeps ownership; children
  // must outlive nothing but their parent, which owns them as members).
  void add_module(const std::string& name, Module& child);
  void add_shared_parameter(Parameter& param);

  void run_hooks(HookPoint point);
  // Tells the grad_ready hooks of this module and its ancestors that `param`'s
  // gradient is complete for this backward.
  void grad_ready(Parameter& param);
  // Makes `t` a tensor of the given shape on this module's device, reusing
  // its storage when shape and dtype already match (no allocation per step).
  // Without a dtype: the module's dtype (activations and their gradients).
  Tensor& ensure(Tensor& t, const Shape& shape, DType dtype);
  Tensor& ensure(Tensor& t, const Shape& shape) { return ensure(t, shape, dtype_); }
  // Zeroes `t` after ensure (gradient scratch that backward accumulates into).
  Tensor& ensure_zeroed(Tensor& t, const Shape& shape, DType dtype);
  Tensor& ensure_zeroed(Tensor& t, const Shape& shape) { return ensure_zeroed(t, shape, dtype_); }

 private:
  void collect_parameters(const std::string& prefix, std::vector<NamedParameter>& out) const;
  void check_new_parameter_name(const std::string& name) const;

  struct HookEntry {
    int id;
    HookPoint point;
    ModuleHook hook;
  };
  struct GradHookEntry {
    int id;
    GradReadyHook hook;
  };

  std::string type_name_;
  Device device_;
  DType dtype_;
  Module* parent_ = nullptr;
  std::vector<std::unique_ptr<Parameter>> params_;
  std::vector<Parameter*> shared_;
  std::vector<std::pair<std::string, Module*>> children_;
  std::vector<HookEntry> hooks_;
  std::vector<GradHookEntry> grad_hooks_;
  int next_hook_id_ = 1;
};

// A container that numbers its children "0", "1", ... (e.g. "blocks.3.mlp").
// It does not own them; the parent that holds the list owns the modules.
class ModuleList : public Module {
 public:
  explicit ModuleList(Device device = Device::cpu(), DType dtype = DType::f32) : Module("ModuleList", device, dtype) {}
  void append(Module& m) { add_module(std::to_string(size_++), m); }
  int64_t size() const { return size_; }

 private:
  int64_t size_ = 0;
};

// Shape of x with its last dimension replaced by `last`.
Shape with_last_dim(const Shape& shape, int64_t last);

}  // namespace dtrain::nn
