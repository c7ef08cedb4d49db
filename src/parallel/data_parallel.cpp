// The data-parallel engine. Reading order: layout (groups and shards), the
// hooks that drive communication during forward/backward, the end-of-backward
// check, the optimizer step. See include/dtrain/parallel/data_parallel.h for
// the contract and docs/parallel.md for the design.
#include "dtrain/parallel/data_parallel.h"

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include <unordered_map>

#include "dtrain/allocator.h"
#include "dtrain/loss_scaler.h"
#include "dtrain/ops.h"
#include "dtrain/optim/clip.h"

namespace dtrain::parallel {

namespace {

DType compute_dtype(Precision p) {
  switch (p) {
    case Precision::f32:
      return DType::f32;
    case Precision::bf16:
      return DType::bf16;
    case Precision::f16:
      return DType::f16;
  }
  return DType::f32;
}

struct Slot {
  nn::Parameter* param;
  int param_id;    // index in the registration-order parameter list
  int64_t offset;  // in the group's flat buffer
};

enum class GatherState { released, gathering, gathered };

// One flat group: a bucket (stages 0-2) or a unit (stage 3).
struct Group {
  GroupInfo info;
  std::vector<Slot> slots;
  // Range this rank updates: the whole group in stage 0, chunk `rank` otherwise.
  int64_t lo = 0, len = 0;

  Tensor value_full;     // stages 0-2: always; stage 3: while gathered (compute dtype)
  Tensor grad_full;      // stages 0-1: always; stages 2-3: while the group fills in backward
  Tensor master;         // f32 [len]: a view of value_full (f32, stages 0-2) or its own tensor
  Tensor compute_shard;  // stage 3 mixed precision: compute-dtype copy of master (the gather input)
  Tensor grad_shard;     // f32 [len]: a view of grad_full (f32, stages 0-1) or its own tensor

  // Per backward.
  int pending = 0;
  bool complete = false;
  bool launched = false;
  bool grads_bound = false;
  comm::Work reduce_work;
  Tensor reduce_out;      // the collective's output (grad_shard itself, or a temporary to add)
  Tensor grad_in_flight;  // stages 2-3: the full gradient a reduce-scatter still reads
  bool add_after_reduce = false;
  bool copy_after_reduce = false;  // mixed precision stages 0-1: f32 result -> grad_shard

  // Stages 1-2: the post-update all-gather of the parameters, waited for by
  // the first module that reads them (it overlaps the next forward).
  comm::Work param_gather;
  bool param_gather_pending = false;

  // Stage 3.
  GatherState gather_state = GatherState::released;
  comm::Work gather_work;
  int users = 0;
};

// Records completion times of asynchronous collectives for the trace: the
// communicator runs them in issue order, so one thread waiting in FIFO order
// sees each completion promptly.
class CompletionWatcher {
 public:
  explicit CompletionWatcher(Trace& trace) : trace_(trace), thread_([this] { run(); }) {}
  ~CompletionWatcher() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void watch(const comm::Work& work, size_t event) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.emplace_back(work, event);
    }
    cv_.notify_all();
  }

 private:
  void run() {
    for (;;) {
      std::pair<comm::Work, size_t> item;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;
        item = queue_.front();
        queue_.pop_front();
      }
      try {
        item.first.wait();
      } catch (...) {
        // The engine's own wait reports the error.
      }
      trace_.end(item.second);
    }
  }

  Trace& trace_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::pair<comm::Work, size_t>> queue_;
  bool stop_ = false;
  std::thread thread_;
};

int64_t round_up(int64_t n, int64_t m) {
  return (n + m - 1) / m * m;
}

}  // namespace

struct DataParallel::Impl {
  DataParallel& self;
  nn::Module& model;
  std::shared_ptr<comm::Communicator> comm;
  DataParallelOptions opt;
  int rank = 0, world = 1;
  DType dtype = DType::f32;
  Device device;

  std::vector<nn::NamedParameter> params;  // registration order
  std::unordered_map<const nn::Parameter*, int> param_id;
  std::vector<int> param_group;  // param id -> group index
  std::vector<Group> groups;
  std::vector<GroupInfo> infos;
  std::vector<int> launch_order;  // fixed order of gradient collectives
  size_t next_launch = 0;

  // Modules and the groups whose storage they need (stages 2-3).
  std::vector<std::pair<nn::Module*, std::vector<int>>> module_groups;
  std::unordered_map<const nn::Module*, std::string> module_name;
  std::vector<std::pair<nn::Module*, int>> hooks;  // (module, hook id), removed at destruction

  // Consistency bookkeeping, reset after each check.
  std::vector<std::pair<std::string, nn::Module*>> modules;
  std::unordered_map<const nn::Module*, int> module_index;
  std::vector<int32_t> forward_runs;
  std::vector<int32_t> grad_seen;

  int micro = 0;  // backward passes since the last step
  bool in_backward = false;
  bool sync_this_backward = true;
  size_t backward_event = 0, forward_event = 0;
  // f16 only (dtrain/loss_scaler.h). The overflow decision comes from the
  // global gradient norm, which every rank computes identically, so all
  // ranks skip or step together.
  std::optional<DynamicLossScaler> scaler;
  float loss_scale() const { return scaler ? scaler->scale() : 1.0f; }

  // Stage 3 prefetch: the order units were used in, per phase (0 forward, 1 backward).
  std::vector<nn::Module*> order[2];
  bool order_recorded[2] = {false, false};
  bool order_valid[2] = {true, true};
  int phase = 0;
  size_t use_index = 0;
  std::unordered_map<const nn::Module*, size_t> compute_event;

  int64_t transient_bytes = 0, transient_peak = 0;
  int64_t activation_estimate = 0;  // set at each step() from the device's peak
  std::unique_ptr<CompletionWatcher> watcher;

  Impl(DataParallel& s, nn::Module& m, std::shared_ptr<comm::Communicator> c, DataParallelOptions o)
      : self(s), model(m), comm(std::move(c)), opt(std::move(o)) {}

  Trace* trace() { return self.trace_.get(); }
  bool mixed() const { return opt.precision != Precision::f32; }

  void note_transient(int64_t delta) {
    transient_bytes += delta;
    transient_peak = std::max(transient_peak, transient_bytes);
  }

  // [Buffer pool] Gathered parameters and bucket gradients (stages 2-3) are
  // released after use by handing them back here; the next unit of the same
  // size reuses them, so a steady step neither allocates nor page-faults. A
  // buffer returns only once no collective uses it any more. Its footprint is
  // what the ledger reports as communication buffers.
  std::vector<Tensor> pool;
  Tensor take(int64_t numel, DType dt) {
    for (size_t i = 0; i < pool.size(); ++i) {
      if (pool[i].numel() == numel && pool[i].dtype() == dt) {
        Tensor t = pool[i];
        pool.erase(pool.begin() + static_cast<std::ptrdiff_t>(i));
        return t;
      }
    }
    Tensor t = Tensor::empty({numel}, dt, device);
    note_transient(static_cast<int64_t>(t.nbytes()));
    return t;
  }
  void give(Tensor t) {
    if (t.defined()) pool.push_back(std::move(t));
  }

  // ---- layout ---------------------------------------------------------------------

  void build_layout() {
    params = model.named_parameters();
    DTRAIN_CHECK(!params.empty(), "DataParallel: the model has no parameters");
    device = params.front().param->device();
    for (size_t i = 0; i < params.size(); ++i) {
      const auto* p = params[i].param;
      DTRAIN_CHECK(p->dtype() == dtype, "DataParallel: parameter '", params[i].name, "' is ", dtype_name(p->dtype()),
                   " but the precision policy ", precision_name(opt.precision), " computes in ", dtype_name(dtype),
                   "; build the model in ", dtype_name(dtype), " (GPTConfig::param_dtype and compute_dtype) or use --precision f32");
      DTRAIN_CHECK(p->device() == device, "DataParallel: parameter '", params[i].name, "' is on ", p->device().str(),
                   " but '", params.front().name, "' is on ", device.str(), "; keep the model on one device");
      param_id[p] = static_cast<int>(i);
    }
    for (auto& [name, m] : model.named_modules()) module_name[m] = name.empty() ? "model" : name;

    std::vector<std::vector<int>> members;  // param ids per group, layout order
    std::vector<std::string> names;
    if (opt.stage < 3) {
      // Buckets in reverse registration order: the order gradients become ready.
      const int64_t elem = static_cast<int64_t>(dtype_size(dtype));
      int64_t bytes = 0;
      for (int i = static_cast<int>(params.size()) - 1; i >= 0; --i) {
        const int64_t b = params[static_cast<size_t>(i)].param->numel() * elem;
        const int64_t cap = members.size() == 1 ? opt.first_bucket_bytes : opt.bucket_bytes;
        if (members.empty() || (bytes > 0 && bytes + b > cap)) {
          members.emplace_back();
          bytes = 0;
        }
        members.back().push_back(i);
        bytes += b;
      }
      for (size_t g = 0; g < members.size(); ++g) names.push_back("bucket " + std::to_string(g));
    } else {
      // Units: modules of a wrapped type (outermost wins), then every other
      // module that owns parameters directly.
      std::vector<bool> covered(params.size(), false);
      for (auto& [name, m] : model.named_modules()) {
        const bool is_unit =
            std::find(opt.unit_types.begin(), opt.unit_types.end(), m->type_name()) != opt.unit_types.end();
        std::vector<int> ids;
        if (is_unit) {
          for (auto* p : m->parameters()) ids.push_back(param_id.at(p));
        } else {
          for (auto* p : m->direct_parameters()) ids.push_back(param_id.at(p));
        }
        ids.erase(std::remove_if(ids.begin(), ids.end(), [&](int i) { return covered[static_cast<size_t>(i)]; }),
                  ids.end());
        if (ids.empty()) continue;
        for (int i : ids) covered[static_cast<size_t>(i)] = true;
        std::sort(ids.begin(), ids.end());
        members.push_back(ids);
        names.push_back(name.empty() ? "model" : name);
      }
      // Registration order of the groups (by first parameter).
      std::vector<size_t> idx(members.size());
      for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
      std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return members[a].front() < members[b].front(); });
      std::vector<std::vector<int>> m2;
      std::vector<std::string> n2;
      for (size_t i : idx) {
        m2.push_back(members[i]);
        n2.push_back(names[i]);
      }
      members.swap(m2);
      names.swap(n2);
    }

    param_group.assign(params.size(), -1);
    groups.resize(members.size());
    for (size_t g = 0; g < members.size(); ++g) {
      Group& G = groups[g];
      G.info.name = names[g];
      int64_t off = 0;
      for (int id : members[g]) {
        nn::Parameter* p = params[static_cast<size_t>(id)].param;
        G.slots.push_back({p, id, off});
        G.info.params.push_back(params[static_cast<size_t>(id)].name);
        off += p->numel();
        param_group[static_cast<size_t>(id)] = static_cast<int>(g);
      }
      G.info.numel = off;
      G.info.padded_numel = round_up(off, world);
      const int64_t chunk = G.info.padded_numel / world;
      G.info.shard_numel = opt.stage == 0 ? G.info.padded_numel : chunk;
      G.info.shard_offset = opt.stage == 0 ? 0 : chunk * rank;
      G.lo = G.info.shard_offset;
      G.len = G.info.shard_numel;
      infos.push_back(G.info);
      self.num_parameters_ += off;
    }
    for (size_t g = 0; g < groups.size(); ++g) launch_order.push_back(static_cast<int>(g));
    if (opt.stage == 3) std::reverse(launch_order.begin(), launch_order.end());  // units finish backward last-first

    // Modules that read or write a group's storage: owners and tied users.
    if (opt.stage >= 1) {
      std::map<int, std::vector<int>> by_group_owner;
      for (auto& [name, m] : model.named_modules()) {
        std::set<int> gs;
        const bool is_unit = opt.stage == 3 && std::find(opt.unit_types.begin(), opt.unit_types.end(),
                                                         m->type_name()) != opt.unit_types.end();
        bool inside_unit = false;
        if (opt.stage == 3) {
          for (nn::Module* a = m->parent(); a != nullptr; a = a->parent()) {
            if (std::find(opt.unit_types.begin(), opt.unit_types.end(), a->type_name()) != opt.unit_types.end()) {
              inside_unit = true;
            }
          }
        }
        if (inside_unit) continue;  // the unit's hooks cover it
        if (is_unit) {
          for (auto* p : m->parameters()) gs.insert(param_group[static_cast<size_t>(param_id.at(p))]);
        }
        for (auto* p : m->direct_parameters()) gs.insert(param_group[static_cast<size_t>(param_id.at(p))]);
        for (auto* p : m->shared_parameters()) {
          auto it = param_id.find(p);
          DTRAIN_CHECK(it != param_id.end(), "DataParallel: module '", name,
                       "' uses a shared parameter that is not part of the model");
          gs.insert(param_group[static_cast<size_t>(it->second)]);
        }
        if (!gs.empty()) module_groups.emplace_back(m, std::vector<int>(gs.begin(), gs.end()));
      }
    }
  }

  Tensor view(const Tensor& flat, const Slot& s) const {
    return flat.narrow(s.offset, s.param->numel()).reshape(s.param->shape());
  }

  void materialize() {
    // Start from rank 0's weights: broadcast every group's full value.
    std::vector<Tensor> fulls;
    for (auto& G : groups) {
      Tensor full = Tensor::zeros({G.info.padded_numel}, dtype, device);
      for (auto& s : G.slots) view(full, s).copy_(s.param->require_value());
      fulls.push_back(full);
    }
    if (opt.broadcast_parameters && world > 1) {
      std::vector<comm::Work> works;
      works.reserve(fulls.size());
      for (auto& f : fulls) works.push_back(comm->broadcast(f, 0));
      for (auto& w : works) w.wait();
    }
    for (size_t g = 0; g < groups.size(); ++g) {
      Group& G = groups[g];
      Tensor full = fulls[g];
      if (opt.stage < 3) {
        G.value_full = full;
        for (auto& s : G.slots) s.param->rebind_value(view(full, s), /*copy_contents=*/false);
        if (opt.stage <= 1) {
          G.grad_full = Tensor::zeros({G.info.padded_numel}, dtype, device);
          for (auto& s : G.slots) s.param->rebind_grad(view(G.grad_full, s), false);
        } else {
          for (auto& s : G.slots) s.param->grad = Tensor();
        }
      }
      // f32 master weights: the parameters themselves where they are f32 and
      // kept whole (stages 0-2), else a tensor of this rank's range.
      Tensor range = full.narrow(G.lo, G.len);
      if (!mixed() && opt.stage <= 2) {
        G.master = range;
      } else {
        G.master = Tensor::empty({G.len}, DType::f32, device);
        if (mixed()) {
          ops::cast(G.master, range);
        } else {
          G.master.copy_(range);
        }
      }
      if (opt.stage == 3 && mixed()) {
        G.compute_shard = Tensor::empty({G.len}, dtype, device);
        G.compute_shard.copy_(range);
      }
      if (!mixed() && opt.stage <= 1) {
        G.grad_shard = G.grad_full.narrow(G.lo, G.len);
      } else {
        G.grad_shard = Tensor::zeros({G.len}, DType::f32, device);
      }
      if (opt.stage == 3) {
        for (auto& s : G.slots) {
          s.param->value = Tensor();
          s.param->grad = Tensor();
        }
      }
    }
    reset_backward_state();
  }

  // ---- hooks ------------------------------------------------------------------

  void install_hooks() {
    using HP = nn::HookPoint;
    auto add = [&](nn::Module& m, HP point, nn::Module::ModuleHook h) {
      hooks.emplace_back(&m, m.add_hook(point, std::move(h)));
    };
    modules = model.named_modules();
    forward_runs.assign(modules.size(), 0);
    for (size_t i = 0; i < modules.size(); ++i) {
      module_index[modules[i].second] = i;
      add(*modules[i].second, HP::pre_forward, [this, i](nn::Module&) { ++forward_runs[i]; });
    }
    add(model, HP::pre_forward, [this](nn::Module&) { begin_phase(0); });
    add(model, HP::pre_backward, [this](nn::Module&) { begin_backward(); });
    for (auto& [m, gs] : module_groups) {
      std::vector<int> ids = gs;
      nn::Module* mod = m;
      add(*m, HP::pre_forward, [this, ids, mod](nn::Module&) { acquire(mod, ids, false); });
      add(*m, HP::post_forward, [this, ids, mod](nn::Module&) { release_use(mod, ids, false); });
      add(*m, HP::pre_backward, [this, ids, mod](nn::Module&) { acquire(mod, ids, true); });
      add(*m, HP::post_backward, [this, ids, mod](nn::Module&) { release_use(mod, ids, true); });
    }
    add(model, HP::post_forward, [this](nn::Module&) { end_phase(); });
    add(model, HP::post_backward, [this](nn::Module&) { end_backward(); });
    hooks.emplace_back(&model, model.add_grad_ready_hook([this](nn::Parameter& p) { on_grad_ready(p); }));
  }

  void begin_phase(int ph) {
    phase = ph;
    use_index = 0;
    if (trace() && ph == 0) forward_event = trace()->begin("forward", "model");
  }

  void end_phase() {
    if (opt.stage == 3) {
      order_recorded[phase] = true;
      release_idle_groups(phase == 0 ? kept_for_backward() : nullptr);
    }
    if (trace() && phase == 0) trace()->end(forward_event);
  }

  // Stage 3: all-gather a group's parameters (asynchronously).
  void start_gather(int g) {
    Group& G = groups[static_cast<size_t>(g)];
    if (G.gather_state != GatherState::released) return;
    G.value_full = take(G.info.padded_numel, dtype);
    const Tensor& input = mixed() ? G.compute_shard : G.master;
    size_t ev = trace() ? trace()->begin("gather", G.info.name) : 0;
    G.gather_work = world > 1 ? comm->all_gather(input, G.value_full) : comm::Work();
    if (world == 1) G.value_full.copy_(input);
    if (trace()) {
      if (world > 1) {
        watcher->watch(G.gather_work, ev);
      } else {
        trace()->end(ev);
      }
    }
    G.gather_state = GatherState::gathering;
  }

  void finish_gather(int g) {
    Group& G = groups[static_cast<size_t>(g)];
    if (G.gather_state != GatherState::gathering) return;
    G.gather_work.wait();
    G.gather_work = comm::Work();
    for (auto& s : G.slots) s.param->rebind_value(view(G.value_full, s), false);
    G.gather_state = GatherState::gathered;
  }

  void release_group(int g) {
    Group& G = groups[static_cast<size_t>(g)];
    if (G.gather_state == GatherState::released) return;
    if (G.gather_state == GatherState::gathering) {
      G.gather_work.wait();  // keep the collective sequence: it was issued everywhere
      G.gather_work = comm::Work();
    }
    for (auto& s : G.slots) s.param->value = Tensor();
    give(G.value_full);
    G.value_full = Tensor();
    G.gather_state = GatherState::released;
  }

  // Stage 3, after an update: start gathering the first units of the next
  // forward, so it does not begin by waiting.
  void prefetch_first_units() {
    if (!order_recorded[0] || !order_valid[0]) return;
    for (size_t k = 0; k < order[0].size() && k < static_cast<size_t>(std::max(0, opt.prefetch_depth)); ++k) {
      if (const auto* gs = groups_of(order[0][k])) {
        for (int g : *gs) start_gather(g);
      }
    }
  }

  void release_idle_groups(const std::vector<int>* keep = nullptr) {
    for (size_t g = 0; g < groups.size(); ++g) {
      if (keep && std::find(keep->begin(), keep->end(), static_cast<int>(g)) != keep->end()) continue;
      if (groups[g].users == 0) release_group(static_cast<int>(g));
    }
  }

  // Stage 3: the units of the last module of forward stay gathered for the
  // first module of backward (the same module), saving one gather per step
  // (for GPT the tied embedding, its largest unit). Released at the latest by
  // step(), which changes the shards.
  const std::vector<int>* kept_for_backward() const {
    if (!order_recorded[0] || order[0].empty()) return nullptr;
    return groups_of(order[0].back());
  }

  const std::vector<int>* groups_of(const nn::Module* m) const {
    for (auto& [mod, gs] : module_groups) {
      if (mod == m) return &gs;
    }
    return nullptr;
  }

  // Stages 2-3: a group's full gradient buffer exists from the first module
  // that writes it until its reduce-scatter is issued.
  void bind_grads(int g) {
    Group& G = groups[static_cast<size_t>(g)];
    if (G.grads_bound) return;
    G.grad_full = take(G.info.padded_numel, dtype);
    G.grad_full.zero_();
    for (auto& s : G.slots) s.param->rebind_grad(view(G.grad_full, s), false);
    G.grads_bound = true;
  }

  // Finishes collectives that are already done (frees their buffers early).
  void reap_completed() {
    for (auto& G : groups) {
      if (G.launched && G.reduce_out.defined() && G.reduce_work.is_completed()) finish_reduce(G);
    }
  }

  // Stages 1-2: waits for the parameter all-gathers step() issued.
  void wait_param_gather(int g) {
    Group& G = groups[static_cast<size_t>(g)];
    if (!G.param_gather_pending) return;
    G.param_gather.wait();
    G.param_gather = comm::Work();
    G.param_gather_pending = false;
  }
  void wait_param_gathers() {
    for (size_t g = 0; g < groups.size(); ++g) wait_param_gather(static_cast<int>(g));
  }

  void acquire(nn::Module* m, const std::vector<int>& ids, bool backward) {
    if (backward && opt.stage >= 2) reap_completed();
    if (opt.stage == 1 || opt.stage == 2) {
      for (int g : ids) wait_param_gather(g);
      if (trace() && !backward) compute_event[m] = trace()->begin("compute", module_name[m]);
    }
    if (opt.stage == 3) {
      const int ph = backward ? 1 : 0;
      if (backward && phase != 1) begin_phase(1);
      // Issue this module's gathers, then the prefetches, then wait for ours.
      for (int g : ids) start_gather(g);
      auto& ord = order[ph];
      if (!order_recorded[ph]) {
        ord.push_back(m);
      } else if (order_valid[ph] && use_index < ord.size() && ord[use_index] == m) {
        for (size_t k = 1; k <= static_cast<size_t>(std::max(0, opt.prefetch_depth)); ++k) {
          if (use_index + k >= ord.size()) break;
          if (const auto* next = groups_of(ord[use_index + k])) {
            for (int g : *next) start_gather(g);
          }
        }
      } else {
        order_valid[ph] = false;  // the model ran differently: stop prefetching
      }
      ++use_index;
      for (int g : ids) {
        finish_gather(g);
        ++groups[static_cast<size_t>(g)].users;
      }
      if (trace()) compute_event[m] = trace()->begin("compute", module_name[m]);
    }
    if (backward) {
      for (int g : ids) bind_grads(g);
    }
  }

  void release_use(nn::Module* m, const std::vector<int>& ids, bool backward) {
    if (trace() && (opt.stage == 3 || !backward)) {
      auto it = compute_event.find(m);
      if (it != compute_event.end()) trace()->end(it->second);
    }
    if (opt.stage != 3) return;
    for (int g : ids) {
      Group& G = groups[static_cast<size_t>(g)];
      // [Structural launch] A unit's reduce-scatter is issued when the last
      // module that uses it in backward has run, not when its last gradient
      // reports ready: gathers and reduce-scatters then interleave the same
      // way on every rank even if one rank's gradient is missing.
      if (backward && sync_this_backward && opt.overlap && !G.launched && last_backward_user.size() == groups.size() &&
          last_backward_user[static_cast<size_t>(g)] == m) {
        G.complete = true;
        launch(g);
      }
      const auto* keep = backward ? nullptr : kept_for_backward();
      const bool kept = keep && std::find(keep->begin(), keep->end(), g) != keep->end() && m == order[0].back();
      if (--G.users == 0 && !kept) release_group(g);
    }
  }

  // Stage 3: for each unit, the module that uses it last in backward = the
  // one that used it first in the recorded forward order.
  std::vector<const nn::Module*> last_backward_user;
  void plan_structural_launch() {
    if (opt.stage != 3 || !last_backward_user.empty() || !order_recorded[0]) return;
    std::vector<const nn::Module*> first(groups.size(), nullptr);
    for (nn::Module* m : order[0]) {
      if (const auto* gs = groups_of(m)) {
        for (int g : *gs) {
          if (first[static_cast<size_t>(g)] == nullptr) first[static_cast<size_t>(g)] = m;
        }
      }
    }
    for (auto* f : first) {
      if (f == nullptr) return;  // a unit unused in forward: fall back to readiness
    }
    last_backward_user = first;
  }

  // ---- backward: buckets ----------------------------------------------------------

  void reset_backward_state() {
    grad_seen.assign(params.size(), 0);
    for (auto& G : groups) {
      G.pending = static_cast<int>(G.slots.size());
      G.complete = false;
      G.launched = false;
      G.grads_bound = opt.stage <= 1;
    }
    next_launch = 0;
  }

  void begin_backward() {
    DTRAIN_CHECK(micro < opt.grad_accumulation, "DataParallel: ", micro + 1,
                 " backward passes before step(), but "
                 "grad_accumulation is ",
                 opt.grad_accumulation, "; call step() after every ", opt.grad_accumulation, " backward pass(es)");
    in_backward = true;
    sync_this_backward = opt.stage >= 2 || micro + 1 == opt.grad_accumulation;
    if (opt.stage == 3) {
      begin_phase(1);
      plan_structural_launch();
    }
    if (trace()) backward_event = trace()->begin("backward", "model");
  }

  void on_grad_ready(nn::Parameter& p) {
    auto it = param_id.find(&p);
    DTRAIN_CHECK(it != param_id.end(), "DataParallel: gradient ready for a parameter '", p.name(),
                 "' that was not in the model when the engine was built");
    const int id = it->second;
    DTRAIN_CHECK(grad_seen[static_cast<size_t>(id)] == 0, "DataParallel: parameter '",
                 params[static_cast<size_t>(id)].name, "' reported its gradient twice in one backward");
    grad_seen[static_cast<size_t>(id)] = 1;
    Group& G = groups[static_cast<size_t>(param_group[static_cast<size_t>(id)])];
    DTRAIN_CHECK(!G.launched, "DataParallel: the gradient of '", params[static_cast<size_t>(id)].name,
                 "' became ready after its unit '", G.info.name,
                 "' was reduced (the last module using a unit in "
                 "backward must be the first one using it in forward)");
    if (--G.pending == 0) {
      G.complete = true;
      if (sync_this_backward && opt.overlap && last_backward_user.empty()) launch_ready();
    }
  }

  // Issues the gradient collectives of complete groups, in the fixed order.
  void launch_ready() {
    while (next_launch < launch_order.size() && groups[static_cast<size_t>(launch_order[next_launch])].complete) {
      if (!groups[static_cast<size_t>(launch_order[next_launch])].launched) launch(launch_order[next_launch]);
      ++next_launch;
    }
  }

  void launch(int g) {
    Group& G = groups[static_cast<size_t>(g)];
    DTRAIN_CHECK(G.grads_bound, "DataParallel: internal: group ", G.info.name, " has no gradient buffer");
    Tensor src = G.grad_full;
    if (mixed()) {  // f32 reductions
      src = Tensor::empty({G.info.padded_numel}, DType::f32, device);
      ops::cast(src, G.grad_full);
    }
    const size_t ev = trace() ? trace()->begin("reduce", G.info.name) : 0;
    comm::Work w;
    G.add_after_reduce = false;
    G.copy_after_reduce = false;
    if (opt.stage == 0) {
      if (world > 1) w = comm->all_reduce(src, comm::ReduceOp::avg);
      G.reduce_out = src;
      G.copy_after_reduce = mixed();
    } else if (opt.stage == 1) {
      Tensor out = src.narrow(G.lo, G.len);
      if (world > 1) w = comm->reduce_scatter(src, out, comm::ReduceOp::avg);
      G.reduce_out = out;
      G.copy_after_reduce = mixed();
    } else {
      // Accumulate into the f32 shard: the first micro-step writes it directly.
      const bool direct = micro == 0;
      Tensor out = direct ? G.grad_shard : Tensor::empty({G.len}, DType::f32, device);
      if (world > 1) {
        w = comm->reduce_scatter(src, out, comm::ReduceOp::avg);
      } else {
        out.copy_(src.narrow(0, G.len));
      }
      G.reduce_out = out;
      G.add_after_reduce = !direct;
      // The full gradient is not kept: unbound now, back to the pool once
      // the collective is done with it (reap_completed / finish_reduce).
      for (auto& s : G.slots) s.param->grad = Tensor();
      G.grad_in_flight = G.grad_full;
      G.grad_full = Tensor();
      G.grads_bound = false;
    }
    G.reduce_work = w;
    G.launched = true;
    if (trace()) {
      if (world > 1) {
        watcher->watch(w, ev);
      } else {
        trace()->end(ev);
      }
    }
  }

  void finish_reduce(Group& G) {
    if (!G.reduce_out.defined() && !G.grad_in_flight.defined()) return;  // already finished
    G.reduce_work.wait();
    G.reduce_work = comm::Work();
    give(G.grad_in_flight);
    G.grad_in_flight = Tensor();
    if (G.copy_after_reduce) G.grad_shard.copy_(G.reduce_out);
    if (G.add_after_reduce) ops::add_(G.grad_shard, G.reduce_out);
    G.reduce_out = Tensor();
  }

  void end_backward() {
    if (trace()) trace()->end(backward_event);
    const size_t wait_ev = trace() ? trace()->begin("backward_wait", "model") : 0;
    in_backward = false;
    std::string mismatch;
    if (sync_this_backward) {
      // Gradients that never arrived count as zero, so this rank still joins
      // every collective; the check below reports them.
      for (size_t id = 0; id < params.size(); ++id) {
        if (grad_seen[id]) continue;
        Group& G = groups[static_cast<size_t>(param_group[id])];
        if (G.launched) continue;  // stage 3: issued structurally, the missing part counted as zero
        bind_grads(param_group[id]);
        if (--G.pending == 0) G.complete = true;
      }
      for (auto& G : groups) {
        if (!G.complete) G.complete = true;  // defensive: counts above make every group complete
      }
      launch_ready();
      comm::Work check_work;
      Tensor check;
      if (opt.check_consistency && world > 1) {
        check = Tensor::empty({static_cast<int64_t>(params.size() + modules.size())}, DType::i32, Device::cpu());
        int32_t* c = check.data<int32_t>();
        for (size_t i = 0; i < params.size(); ++i) c[i] = grad_seen[i];
        for (size_t i = 0; i < modules.size(); ++i) c[params.size() + i] = forward_runs[i];
        check_work = comm->all_reduce(check, comm::ReduceOp::sum);
      }
      for (int g : launch_order) finish_reduce(groups[static_cast<size_t>(g)]);
      if (check.defined()) {
        check_work.wait();
        mismatch = describe_mismatch(check);
      }
      std::fill(forward_runs.begin(), forward_runs.end(), 0);
    }
    if (opt.stage == 3) {
      order_recorded[1] = true;
      release_idle_groups();
    }
    ++micro;
    reset_backward_state();
    if (trace()) trace()->end(wait_ev);
    if (!mismatch.empty()) DTRAIN_THROW(mismatch);
  }

  std::string describe_mismatch(const Tensor& summed) const {
    const int32_t* c = summed.data<int32_t>();
    std::ostringstream os;
    int problems = 0;
    for (size_t i = 0; i < params.size() && problems < 8; ++i) {
      if (c[i] != 0 && c[i] != world) {
        os << (problems++ ? "; " : "") << "parameter '" << params[i].name << "' received a gradient on " << c[i]
           << " of " << world << " ranks (" << (grad_seen[i] ? "including" : "not on") << " this rank, rank " << rank
           << ")";
      }
    }
    for (size_t i = 0; i < modules.size() && problems < 8; ++i) {
      const int32_t total = c[params.size() + i];
      if (total != forward_runs[i] * world) {
        os << (problems++ ? "; " : "") << "module '" << (modules[i].first.empty() ? "model" : modules[i].first)
           << "' ran " << forward_runs[i] << " time(s) on this rank (rank " << rank << ") but " << total
           << " times over all " << world << " ranks";
      }
    }
    if (problems == 0) return "";
    return "DataParallel: ranks disagree in this backward (every rank must run the same modules and produce a "
           "gradient for the same parameters; make unused branches contribute a zero gradient): " +
           os.str();
  }

  // ---- step -----------------------------------------------------------------------

  std::vector<Tensor> grad_shards() const {
    std::vector<Tensor> out;
    for (auto& G : groups) out.push_back(G.grad_shard);
    return out;
  }

  void zero_grads() {
    for (auto& G : groups) {
      if (G.grad_full.defined()) G.grad_full.zero_();
      if (G.grad_shard.defined()) G.grad_shard.zero_();
    }
  }
};

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
  impl_ = std::make_unique<Impl>(*this, model, std::move(communicator), options_);
  Impl& d = *impl_;
  d.rank = d.comm->rank();
  d.world = d.comm->size();
  d.dtype = compute_dtype(options_.precision);
  if (options_.precision == Precision::f16) {
    LossScalerConfig sc;
    sc.init_scale = options_.initial_loss_scale;
    sc.growth_interval = options_.loss_scale_window;
    d.scaler.emplace(sc);
  }
  if (trace_) d.watcher = std::make_unique<CompletionWatcher>(*trace_);
  d.build_layout();
  d.materialize();
  d.install_hooks();
}

DataParallel::~DataParallel() {
  if (!impl_) return;
  for (auto& [m, id] : impl_->hooks) {
    try {
      m->remove_hook(id);
    } catch (...) {
    }
  }
  for (auto& G : impl_->groups) {
    try {
      G.reduce_work.wait();
      G.gather_work.wait();
      G.param_gather.wait();
    } catch (...) {
    }
  }
  impl_->watcher.reset();
}

int DataParallel::rank() const {
  return impl_->rank;
}
int DataParallel::world_size() const {
  return impl_->world;
}
const std::vector<GroupInfo>& DataParallel::groups() const {
  return impl_->infos;
}

std::vector<optim::ParamGroup> DataParallel::param_groups(float weight_decay) const {
  optim::ParamGroup decay{"decay", {}, weight_decay, 1.0f};
  optim::ParamGroup no_decay{"no_decay", {}, 0.0f, 1.0f};
  for (auto& G : impl_->groups) {
    for (auto& s : G.slots) {
      const int64_t a = std::max(G.lo, s.offset);
      const int64_t b = std::min(G.lo + G.len, s.offset + s.param->numel());
      if (b <= a) continue;
      const std::string& name = impl_->params[static_cast<size_t>(s.param_id)].name;
      optim::ParamRef ref;
      ref.value = G.master.narrow(a - G.lo, b - a);
      ref.grad = G.grad_shard.narrow(a - G.lo, b - a);
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
  return impl_->loss_scale() / static_cast<float>(options_.grad_accumulation);
}

StepResult DataParallel::step(optim::Optimizer& optimizer, float lr, float max_grad_norm) {
  Impl& d = *impl_;
  DTRAIN_CHECK(!d.in_backward, "DataParallel::step called inside backward");
  DTRAIN_CHECK(d.micro == options_.grad_accumulation, "DataParallel::step: ", d.micro,
               " backward pass(es) since the last step, expected grad_accumulation = ", options_.grad_accumulation);
  d.wait_param_gathers();                            // the master shares storage with the last all-gather's input
  if (options_.stage == 3) d.release_idle_groups();  // gathered copies go stale with the update
  const size_t ev = trace_ ? trace_->begin("step", "optimizer") : 0;
  {
    // Activations: what the device peaked at (since the caller's last
    // reset_peak_memory) beyond model state and communication buffers.
    const MemoryLedger m = ledger(&optimizer);
    d.activation_estimate = std::max<int64_t>(0, memory_stats(d.device).peak_bytes - m.model_state() - m.comm_buffers);
  }
  StepResult r;
  r.loss_scale = d.loss_scale();
  // Global norm: every rank's shard, summed over ranks (stage 0: the full gradients, already equal).
  Tensor sq = Tensor::empty({1}, DType::f32, d.device);
  ops::global_norm_squared(sq, d.grad_shards());
  if (options_.stage >= 1 && d.world > 1) d.comm->all_reduce(sq, comm::ReduceOp::sum).wait();
  const float scaled_norm = std::sqrt(static_cast<float>(sq.to(Device::cpu()).item(0)));
  r.grad_norm = scaled_norm / r.loss_scale;
  if (d.scaler && !d.scaler->update(std::isfinite(scaled_norm))) {  // overflow: skip, scale backs off
    r.skipped = true;
    d.zero_grads();
    d.micro = 0;
    if (trace_) trace_->end(ev);
    return r;
  }
  const float clip = optim::clip_scale(r.grad_norm, max_grad_norm);
  optimizer.step(lr, clip / r.loss_scale);
  // Updated shards back to the compute copies, then everyone's parameters:
  // issued here, waited for by the first module that reads a group in the
  // next forward (or by anything else that needs the values, see
  // wait_for_parameters), so the all-gather overlaps the next forward.
  for (auto& G : d.groups) {
    if (d.mixed()) {
      if (options_.stage == 3) {
        ops::cast(G.compute_shard, G.master);
      } else {
        Tensor range = G.value_full.narrow(G.lo, G.len);
        ops::cast(range, G.master);
      }
    }  // stage 3 f32: the master is the shard the next gather reads
    if ((options_.stage == 1 || options_.stage == 2) && d.world > 1) {
      const size_t gev = trace_ ? trace_->begin("gather", G.info.name) : 0;
      G.param_gather = d.comm->all_gather(G.value_full.narrow(G.lo, G.len), G.value_full);
      G.param_gather_pending = true;
      if (trace_) d.watcher->watch(G.param_gather, gev);
    }
  }
  d.zero_grads();
  d.micro = 0;
  if (options_.stage == 3) d.prefetch_first_units();
  if (trace_) trace_->end(ev);
  return r;
}

float DataParallel::average(float value) {
  if (impl_->world == 1) return value;
  Tensor t = Tensor::from_vector({value}, {1});
  impl_->comm->all_reduce(t, comm::ReduceOp::avg).wait();
  return static_cast<float>(t.item(0));
}

void DataParallel::wait_for_parameters() {
  impl_->wait_param_gathers();
}

std::vector<std::pair<std::string, Tensor>> DataParallel::full_parameters() {
  Impl& d = *impl_;
  d.wait_param_gathers();
  std::vector<std::pair<std::string, Tensor>> out(d.params.size());
  for (size_t g = 0; g < d.groups.size(); ++g) {
    Group& G = d.groups[g];
    const bool gather = options_.stage == 3 && G.gather_state == GatherState::released;
    if (gather) d.start_gather(static_cast<int>(g));
    if (options_.stage == 3) d.finish_gather(static_cast<int>(g));
    for (auto& s : G.slots) {
      Tensor v = Tensor::empty(s.param->shape(), DType::f32, Device::cpu());
      Tensor src = d.view(G.value_full, s);
      if (src.dtype() == DType::f32) {
        v.copy_(src);
      } else {
        Tensor tmp = Tensor::empty(s.param->shape(), DType::f32, d.device);
        ops::cast(tmp, src);
        v.copy_(tmp);
      }
      out[static_cast<size_t>(s.param_id)] = {d.params[static_cast<size_t>(s.param_id)].name, v};
    }
    if (gather) d.release_group(static_cast<int>(g));
  }
  return out;
}

MemoryLedger DataParallel::predicted() const {
  return predict_model_state(options_.stage, num_parameters_, impl_->world, options_.precision);
}

MemoryLedger DataParallel::ledger(const optim::Optimizer* optimizer) const {
  const Impl& d = *impl_;
  MemoryLedger m;
  for (auto& G : d.groups) {
    if (options_.stage < 3) {
      m.parameters += static_cast<int64_t>(G.value_full.nbytes());
    } else {
      m.parameters += static_cast<int64_t>((d.mixed() ? G.compute_shard : G.master).nbytes());
    }
    if (options_.stage <= 1) m.gradients += static_cast<int64_t>(G.grad_full.nbytes());
    if (options_.stage >= 2 || d.mixed()) m.gradients += static_cast<int64_t>(G.grad_shard.nbytes());
    if (d.mixed()) m.optimizer_state += static_cast<int64_t>(G.master.nbytes());
  }
  if (optimizer != nullptr) {
    for (auto& [name, t] : const_cast<optim::Optimizer*>(optimizer)->state()) {
      m.optimizer_state += static_cast<int64_t>(t.nbytes());
    }
  }
  m.comm_buffers = d.transient_peak;
  m.activations = d.activation_estimate;
  return m;
}

std::string DataParallel::describe_plan() const {
  const Impl& d = *impl_;
  std::ostringstream os;
  os << "DataParallel plan: ZeRO stage " << options_.stage << ", " << d.world << " rank(s), this is rank " << d.rank
     << ", precision " << precision_name(options_.precision) << ", " << num_parameters_ << " parameters in "
     << d.groups.size() << (options_.stage == 3 ? " unit(s)" : " bucket(s)") << ", overlap "
     << (options_.overlap ? "on" : "off") << ", grad accumulation " << options_.grad_accumulation;
  if (options_.stage == 3) os << ", prefetch depth " << options_.prefetch_depth;
  os << "\n";
  for (auto& G : d.groups) {
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
