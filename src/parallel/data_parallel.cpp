// The data-parallel engine's front: it assembles the pieces (engine.h), wires
// the module hooks that drive them during forward and backward, and answers
// the public API. The optimizer step is in data_parallel_step.cpp. See
// include/dtrain/parallel/data_parallel.h for the contract and
// docs/parallel.md for the design.
#include "dtrain/parallel/data_parallel.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "dtrain/ops.h"
#include "parallel/engine.h"

namespace dtrain::parallel {

namespace {

detail::EngineContext make_context(std::shared_ptr<comm::Communicator> comm, const DataParallelOptions& options,
                                   Trace* trace) {
  detail::EngineContext ctx;
  ctx.rank = comm->rank();
  ctx.world = comm->size();
  ctx.comm = std::move(comm);
  ctx.opt = options;
  ctx.trace = trace;
  if (trace != nullptr) ctx.watcher = std::make_unique<detail::CompletionWatcher>(*trace);
  return ctx;
}

}  // namespace

DataParallel::Impl::Impl(nn::Module& m, std::shared_ptr<comm::Communicator> comm, const DataParallelOptions& options,
                         Trace* trace)
    : model(m),
      ctx(make_context(std::move(comm), options, trace)),
      precision(options.precision, options.initial_loss_scale, options.loss_scale_window),
      layout(detail::plan_layout(m, options, precision.compute_dtype(), ctx.rank, ctx.world)),
      pool(layout.device),
      state(ctx, layout, precision),
      reducer(ctx, layout, state, pool, precision),
      consistency(m, layout) {
  ctx.device = layout.device;
  if (options.stage == 3) {
    gathers = std::make_unique<detail::GatherScheduler>(ctx, layout, state, pool, precision,
                                                        [this](int g) { reducer.launch_unit(g); });
  }
  state.materialize(model);
  install_hooks();
}

DataParallel::Impl::~Impl() {
  for (auto& [m, id] : hooks_) {
    try {
      m->remove_hook(id);
    } catch (...) {
    }
  }
  reducer.drain();
  if (gathers) gathers->drain();
  state.drain();
  ctx.watcher.reset();
}

// ---- hooks ------------------------------------------------------------------------------

void DataParallel::Impl::install_hooks() {
  using HP = nn::HookPoint;
  auto add = [&](nn::Module& m, HP point, nn::Module::ModuleHook h) {
    hooks_.emplace_back(&m, m.add_hook(point, std::move(h)));
  };
  const auto& modules = consistency.modules();
  for (size_t i = 0; i < modules.size(); ++i) {
    add(*modules[i].second, HP::pre_forward, [this, i](nn::Module&) { consistency.count_forward(i); });
  }
  add(model, HP::pre_forward, [this](nn::Module&) { begin_forward(); });
  add(model, HP::pre_backward, [this](nn::Module&) { begin_backward(); });
  for (auto& [m, gs] : layout.module_groups) {
    std::vector<int> ids = gs;
    nn::Module* mod = m;
    add(*m, HP::pre_forward, [this, ids, mod](nn::Module&) { acquire(mod, ids, false); });
    add(*m, HP::post_forward, [this, ids, mod](nn::Module&) { release_use(mod, ids, false); });
    add(*m, HP::pre_backward, [this, ids, mod](nn::Module&) { acquire(mod, ids, true); });
    add(*m, HP::post_backward, [this, ids, mod](nn::Module&) { release_use(mod, ids, true); });
  }
  add(model, HP::post_forward, [this](nn::Module&) { end_forward(); });
  add(model, HP::post_backward, [this](nn::Module&) { end_backward(); });
  hooks_.emplace_back(&model, model.add_grad_ready_hook([this](nn::Parameter& p) { on_grad_ready(p); }));
}

void DataParallel::Impl::begin_forward() {
  if (gathers) gathers->begin_phase(0);
  forward_event_ = ctx.trace_begin("forward", "model");
}

void DataParallel::Impl::end_forward() {
  if (gathers) gathers->end_phase();
  ctx.trace_end(forward_event_);
}

void DataParallel::Impl::acquire(nn::Module* m, const std::vector<int>& ids, bool backward) {
  if (backward && stage() >= 2) reducer.reap_completed();
  if (stage() == 1 || stage() == 2) {
    for (int g : ids) state.wait_param_gather(g);
    if (ctx.trace && !backward) compute_event_[m] = ctx.trace->begin("compute", layout.module_name.at(m));
  }
  if (gathers) {
    gathers->acquire(m, ids, backward);
    if (ctx.trace) compute_event_[m] = ctx.trace->begin("compute", layout.module_name.at(m));
  }
  if (backward) {
    for (int g : ids) reducer.bind_grads(g);
  }
}

void DataParallel::Impl::release_use(nn::Module* m, const std::vector<int>& ids, bool backward) {
  if (ctx.trace && (stage() == 3 || !backward)) {
    auto it = compute_event_.find(m);
    if (it != compute_event_.end()) ctx.trace->end(it->second);
  }
  if (gathers) gathers->release_use(m, ids, backward, sync_this_backward);
}

void DataParallel::Impl::begin_backward() {
  const int accum = ctx.opt.grad_accumulation;
  DTRAIN_CHECK(micro < accum, "DataParallel: ", micro + 1, " backward passes before step(), but grad_accumulation is ",
               accum, "; call step() after every ", accum, " backward pass(es)");
  in_backward = true;
  sync_this_backward = stage() >= 2 || micro + 1 == accum;
  bool structural = false;
  if (gathers) {
    gathers->begin_phase(1);
    structural = gathers->plan_structural_launch();
  }
  reducer.begin_backward(micro, sync_this_backward, structural);
  backward_event_ = ctx.trace_begin("backward", "model");
}

void DataParallel::Impl::on_grad_ready(nn::Parameter& p) {
  auto it = layout.param_id.find(&p);
  DTRAIN_CHECK(it != layout.param_id.end(), "DataParallel: gradient ready for a parameter '", p.name(),
               "' that was not in the model when the engine was built");
  consistency.note_grad(it->second);
  reducer.grad_ready(it->second);
}

void DataParallel::Impl::end_backward() {
  ctx.trace_end(backward_event_);
  const size_t wait_ev = ctx.trace_begin("backward_wait", "model");
  in_backward = false;
  std::string mismatch;
  if (sync_this_backward) {
    reducer.complete_missing(consistency.grads_seen());
    const bool check = ctx.opt.check_consistency && ctx.world > 1;
    if (check) consistency.start(*ctx.comm);
    reducer.finish_all();
    if (check) mismatch = consistency.finish(ctx.rank, ctx.world);
    consistency.reset_forward_runs();
    // Every rank gets here (an error is raised below), so the broadcast inside matches.
    if (stage() <= 2 && !reducer.order_adopted()) reducer.adopt_observed_order();
  }
  if (gathers) gathers->end_backward();
  ++micro;
  reducer.reset();
  consistency.reset_grads();
  ctx.trace_end(wait_ev);
  if (!mismatch.empty()) DTRAIN_THROW(mismatch);
}

// ---- public API ------------------------------------------------------------------------

DataParallel::DataParallel(nn::Module& model, std::shared_ptr<comm::Communicator> communicator,
                           DataParallelOptions options)
    : options_(std::move(options)) {
  DTRAIN_CHECK(communicator != nullptr, "DataParallel: the communicator is null; call comm::init_process_group()");
  DTRAIN_CHECK(options_.stage >= 0 && options_.stage <= 3, "DataParallel: ZeRO stage must be 0, 1, 2 or 3, got ",
               options_.stage);
  DTRAIN_CHECK(options_.grad_accumulation >= 1, "DataParallel: grad_accumulation must be >= 1, got ",
               options_.grad_accumulation);
  DTRAIN_CHECK(options_.first_bucket_bytes > 0 && options_.bucket_bytes > 0,
               "DataParallel: bucket sizes must be positive, got ", options_.first_bucket_bytes, " and ",
               options_.bucket_bytes);
  DTRAIN_CHECK(options_.prefetch_depth >= 0, "DataParallel: prefetch_depth must be >= 0, got ",
               options_.prefetch_depth);
  if (options_.trace) trace_ = std::make_unique<Trace>();
  impl_ = std::make_unique<Impl>(model, std::move(communicator), options_, trace_.get());
  num_parameters_ = impl_->layout.num_parameters;
}

DataParallel::~DataParallel() = default;

int DataParallel::rank() const {
  return impl_->ctx.rank;
}
int DataParallel::world_size() const {
  return impl_->ctx.world;
}
const std::vector<GroupInfo>& DataParallel::groups() const {
  return impl_->layout.infos;
}

std::vector<optim::ParamGroup> DataParallel::param_groups(float weight_decay) const {
  const Impl& d = *impl_;
  optim::ParamGroup decay{"decay", {}, weight_decay, 1.0f};
  optim::ParamGroup no_decay{"no_decay", {}, 0.0f, 1.0f};
  for (size_t g = 0; g < d.layout.groups.size(); ++g) {
    const detail::GroupLayout& G = d.layout.groups[g];
    const detail::GroupTensors& T = d.state[g];
    for (auto& s : G.slots) {
      const int64_t a = std::max(G.lo, s.offset);
      const int64_t b = std::min(G.lo + G.len, s.offset + s.param->numel());
      if (b <= a) continue;
      const std::string& name = d.layout.param_name(s.param_id);
      optim::ParamRef ref;
      ref.value = T.master.narrow(a - G.lo, b - a);
      ref.grad = T.grad_shard.narrow(a - G.lo, b - a);
      const bool whole = a == s.offset && b == s.offset + s.param->numel();
      ref.name = whole ? name : name + "[" + std::to_string(a - s.offset) + ":" + std::to_string(b - s.offset) + "]";
      if (whole && options_.stage == 0) {
        ref.value = ref.value.reshape(s.param->shape());
        ref.grad = ref.grad.reshape(s.param->shape());
      }
      (s.param->weight_decay() ? decay : no_decay).params.push_back(std::move(ref));
    }
  }
  std::vector<optim::ParamGroup> out;
  if (!decay.params.empty()) out.push_back(std::move(decay));
  if (!no_decay.params.empty()) out.push_back(std::move(no_decay));
  return out;
}

float DataParallel::grad_scale() const {
  return impl_->precision.loss_scale() / static_cast<float>(options_.grad_accumulation);
}

float DataParallel::average(float value) {
  if (impl_->ctx.world == 1) return value;
  Tensor t = Tensor::from_vector({value}, {1});
  impl_->ctx.comm->all_reduce(t, comm::ReduceOp::avg).wait();
  return static_cast<float>(t.item(0));
}

void DataParallel::wait_for_parameters() {
  impl_->state.wait_param_gathers();
}

std::optional<LossScalerState> DataParallel::loss_scaler_state() const {
  const DynamicLossScaler* scaler = impl_->precision.scaler();
  if (scaler == nullptr) return std::nullopt;
  return scaler->state();
}

void DataParallel::restore_loss_scaler(const LossScalerState& state) {
  DynamicLossScaler* scaler = impl_->precision.scaler();
  DTRAIN_CHECK(scaler != nullptr, "DataParallel::restore_loss_scaler: this engine trains in ",
               precision_name(options_.precision), ", which has no loss scaler (only f16 does)");
  scaler->restore(state);
}

void DataParallel::parameters_from_masters() {
  Impl& d = *impl_;
  d.state.wait_param_gathers();
  if (d.gathers) {  // stage 3: a gathered copy would hold the old values
    for (size_t g = 0; g < d.layout.groups.size(); ++g) {
      const int gi = static_cast<int>(g);
      if (!d.gathers->gathered_or_gathering(gi)) continue;
      d.gathers->finish_gather(gi);
      d.gathers->release(gi);
    }
  }
  d.state.publish_update();
  d.state.wait_param_gathers();
}

std::vector<std::pair<std::string, Tensor>> DataParallel::full_parameters() {
  Impl& d = *impl_;
  d.state.wait_param_gathers();
  std::vector<std::pair<std::string, Tensor>> out(d.layout.params.size());
  for (size_t g = 0; g < d.layout.groups.size(); ++g) {
    const int gi = static_cast<int>(g);
    const bool gather = d.gathers && !d.gathers->gathered_or_gathering(gi);
    if (gather) d.gathers->start_gather(gi);
    if (d.gathers) d.gathers->finish_gather(gi);
    for (auto& s : d.layout.groups[g].slots) {
      Tensor v = Tensor::empty(s.param->shape(), DType::f32, Device::cpu());
      Tensor src = detail::slot_view(d.state[g].value_full, s);
      if (src.dtype() == DType::f32) {
        v.copy_(src);
      } else {
        Tensor tmp = Tensor::empty(s.param->shape(), DType::f32, d.ctx.device);
        ops::cast(tmp, src);
        v.copy_(tmp);
      }
      out[static_cast<size_t>(s.param_id)] = {d.layout.param_name(s.param_id), v};
    }
    if (gather) d.gathers->release(gi);
  }
  return out;
}

MemoryLedger DataParallel::predicted() const {
  return predict_model_state(options_.stage, num_parameters_, impl_->ctx.world, options_.precision);
}

MemoryLedger DataParallel::ledger(const optim::Optimizer* optimizer) const {
  const Impl& d = *impl_;
  MemoryLedger m;
  d.state.count(m);
  if (optimizer != nullptr) {
    for (auto& [name, t] : const_cast<optim::Optimizer*>(optimizer)->state()) {
      m.optimizer_state += static_cast<int64_t>(t.nbytes());
    }
  }
  m.comm_buffers = d.pool.footprint_bytes();
  m.activations = d.activation_estimate;
  return m;
}

std::string DataParallel::describe_plan() const {
  const Impl& d = *impl_;
  std::ostringstream os;
  os << "DataParallel plan: ZeRO stage " << options_.stage << ", " << d.ctx.world << " rank(s), this is rank "
     << d.ctx.rank << ", precision " << precision_name(options_.precision) << ", " << num_parameters_
     << " parameters in " << d.layout.groups.size() << (options_.stage == 3 ? " unit(s)" : " bucket(s)") << ", overlap "
     << (options_.overlap ? "on" : "off") << ", grad accumulation " << options_.grad_accumulation;
  if (options_.stage == 3) os << ", prefetch depth " << options_.prefetch_depth;
  os << "\n";
  for (auto& G : d.layout.groups) {
    char line[256];
    std::snprintf(line, sizeof(line), "  %-16s %10lld elements (padded %lld), %3zu params, shard [%lld, %lld)",
                  G.info.name.c_str(), static_cast<long long>(G.info.numel),
                  static_cast<long long>(G.info.padded_numel), G.slots.size(), static_cast<long long>(G.lo),
                  static_cast<long long>(G.lo) + static_cast<long long>(G.len));
    os << line << ": " << G.info.params.front();
    if (G.info.params.size() > 1) os << " ... " << G.info.params.back();
    os << "\n";
  }
  return os.str();
}

}  // namespace dtrain::parallel
