#include "parallel/sharded_state.h"

#include <algorithm>
#include <memory>

namespace dtrain::parallel::detail {

ShardedState::ShardedState(EngineContext& ctx, const Layout& layout, const PrecisionPolicy& precision)
    : ctx_(ctx), layout_(layout), precision_(precision), groups_(layout.groups.size()) {}

namespace {

// A parameter built under nn::DeferredInit has no storage yet: the model says
// how it starts.
bool deferred(const Slot& s) {
  return !s.param->value.defined();
}

// Elements [first, first + out.numel()) of the slot's parameter, flattened:
// its current value, or for a deferred one its initial value.
void fill_from_parameter(const nn::Module& model, const Layout& layout, const Slot& s, Tensor out, int64_t first) {
  if (deferred(s)) {
    model.init_parameter_slice(layout.param_name(s.param_id), out, first);
  } else {
    out.copy_(s.param->value.reshape({s.param->numel()}).narrow(first, out.numel()));
  }
}

// Fills `out` with elements [lo, lo + out.numel()) of group G's flat,
// zero-padded buffer.
void fill_group_range(const nn::Module& model, const Layout& layout, const GroupLayout& G, Tensor& out, int64_t lo) {
  out.zero_();
  const int64_t hi = lo + out.numel();
  for (auto& s : G.slots) {
    const int64_t a = std::max(lo, s.offset);
    const int64_t b = std::min(hi, s.offset + s.param->numel());
    if (b > a) fill_from_parameter(model, layout, s, out.narrow(a - lo, b - a), a - s.offset);
  }
}

}  // namespace

void ShardedState::materialize(const nn::Module& model) {
  if (ctx_.opt.stage == 3) {
    materialize_shards(model);
  } else {
    materialize_full(model);
  }
}

// Stages 0-2: every rank holds every group in full. Parameters with values
// start from rank 0's (a broadcast); deferred ones are initialised in place,
// identically on every rank.
void ShardedState::materialize_full(const nn::Module& model) {
  const int stage = ctx_.opt.stage;
  const DType dtype = precision_.compute_dtype();
  bool any_values = false;
  std::vector<Tensor> fulls;
  for (auto& G : layout_.groups) {
    Tensor full = Tensor::empty({G.info.padded_numel}, dtype, ctx_.device);
    fill_group_range(model, layout_, G, full, 0);
    for (auto& s : G.slots) any_values = any_values || !deferred(s);
    fulls.push_back(full);
  }
  if (ctx_.opt.broadcast_parameters && ctx_.world > 1 && any_values) {
    std::vector<comm::Work> works;
    works.reserve(fulls.size());
    for (auto& f : fulls) works.push_back(ctx_.comm->broadcast(f, 0));
    for (auto& w : works) w.wait();
  }
  for (size_t g = 0; g < groups_.size(); ++g) {
    const GroupLayout& G = layout_.groups[g];
    GroupTensors& T = groups_[g];
    T.value_full = fulls[g];
    for (auto& s : G.slots) s.param->rebind_value(slot_view(T.value_full, s), /*copy_contents=*/false);
    if (stage <= 1) {
      T.grad_full = Tensor::zeros({G.info.padded_numel}, dtype, ctx_.device);
      for (auto& s : G.slots) s.param->rebind_grad(slot_view(T.grad_full, s), false);
    } else {
      for (auto& s : G.slots) s.param->grad = Tensor();
    }
    // f32 master weights: the parameters themselves where they are f32,
    // else a tensor of this rank's range.
    Tensor range = T.value_full.narrow(G.lo, G.len);
    if (!precision_.mixed()) {
      T.master = range;
    } else {
      T.master = Tensor::empty({G.len}, DType::f32, ctx_.device);
      precision_.to_f32(T.master, range);
    }
    T.grad_shard = gradient_shard(T.grad_full, G);
    T.grad_shard_owned = stage >= 2 || (stage == 0 && precision_.mixed() && ctx_.world > 1);
  }
}

// Where this rank's reduced gradient lives, stages 0-2 (see the header).
Tensor ShardedState::gradient_shard(const Tensor& grad_full, const GroupLayout& G) const {
  const int stage = ctx_.opt.stage;
  if (stage >= 2) return Tensor::zeros({G.len}, DType::f32, ctx_.device);
  // f32, or world size 1 (nothing to reduce): the bucket's own range.
  if (!precision_.mixed() || ctx_.world == 1) return grad_full.narrow(G.lo, G.len);
  if (stage == 0) return Tensor::zeros({G.len}, DType::f32, ctx_.device);
  // Stage 1, mixed, world > 1: the f32 shard takes 4 x len bytes, at most the
  // bucket's 2 x padded_numel (len = padded_numel / world, world >= 2). The
  // bucket is dead once the reduce-scatter has read its f32 copy, so the shard
  // lives in the bucket's first bytes, holding the bucket's storage alive.
  DTRAIN_CHECK(G.len * 4 <= static_cast<int64_t>(grad_full.nbytes()),
               "DataParallel: internal: the f32 gradient shard does not fit in its bucket");
  return Tensor::from_blob(grad_full.data_ptr(), {G.len}, DType::f32, ctx_.device,
                           [keep = grad_full.storage()](void*) {});
}

// Stage 3: each rank allocates and fills only its chunk of every unit. A
// deferred parameter's chunk is initialised in place (bitwise the same
// range of the whole initial value, whatever the world size); parameters
// with values start from rank 0's, which sends each rank its chunk, one
// unit at a time, so no rank ever holds a second copy of the model.
void ShardedState::materialize_shards(const nn::Module& model) {
  const DType dtype = precision_.compute_dtype();
  for (size_t g = 0; g < groups_.size(); ++g) {
    const GroupLayout& G = layout_.groups[g];
    GroupTensors& T = groups_[g];
    Tensor shard = Tensor::empty({G.len}, dtype, ctx_.device);
    bool any_values = false;
    for (auto& s : G.slots) any_values = any_values || !deferred(s);
    if (ctx_.opt.broadcast_parameters && ctx_.world > 1 && any_values) {
      const uint32_t tag = static_cast<uint32_t>(g);
      if (ctx_.rank == 0) {
        Tensor full = Tensor::empty({G.info.padded_numel}, dtype, ctx_.device);
        fill_group_range(model, layout_, G, full, 0);
        std::vector<comm::Work> sends;
        for (int r = 1; r < ctx_.world; ++r) sends.push_back(ctx_.comm->send(full.narrow(r * G.len, G.len), r, tag));
        shard.copy_(full.narrow(0, G.len));
        for (auto& w : sends) w.wait();
      } else {
        ctx_.comm->recv(shard, 0, tag).wait();
      }
    } else {
      fill_group_range(model, layout_, G, shard, G.lo);
    }
    if (precision_.mixed()) {
      T.compute_shard = shard;
      T.master = Tensor::empty({G.len}, DType::f32, ctx_.device);
      precision_.to_f32(T.master, shard);
    } else {
      T.master = shard;
    }
    T.grad_shard = Tensor::zeros({G.len}, DType::f32, ctx_.device);
    T.grad_shard_owned = true;
    for (auto& s : G.slots) {
      s.param->value = Tensor();
      s.param->grad = Tensor();
    }
  }
}

std::vector<Tensor> ShardedState::grad_shards() const {
  std::vector<Tensor> out;
  out.reserve(groups_.size());
  for (auto& T : groups_) out.push_back(T.grad_shard);
  return out;
}

void ShardedState::zero_grads() {
  for (auto& T : groups_) {
    if (T.grad_full.defined()) T.grad_full.zero_();
    if (T.grad_shard.defined()) T.grad_shard.zero_();
  }
}

void ShardedState::publish_update() {
  const int stage = ctx_.opt.stage;
  for (size_t g = 0; g < groups_.size(); ++g) {
    const GroupLayout& G = layout_.groups[g];
    GroupTensors& T = groups_[g];
    if (precision_.mixed()) {
      if (stage == 3) {
        precision_.from_master(T.compute_shard, T.master);
      } else {
        Tensor range = T.value_full.narrow(G.lo, G.len);
        precision_.from_master(range, T.master);
      }
    }  // stage 3 f32: the master is the shard the next gather reads
    if ((stage == 1 || stage == 2) && ctx_.world > 1) {
      const size_t ev = ctx_.trace_begin("gather", G.info.name);
      T.param_gather = ctx_.comm->all_gather(T.value_full.narrow(G.lo, G.len), T.value_full);
      T.param_gather_pending = true;
      ctx_.trace_async(T.param_gather, ev);
    }
  }
}

void ShardedState::wait_param_gather(int g) {
  GroupTensors& T = groups_[static_cast<size_t>(g)];
  if (!T.param_gather_pending) return;
  T.param_gather.wait();
  T.param_gather = comm::Work();
  T.param_gather_pending = false;
}

void ShardedState::wait_param_gathers() {
  for (size_t g = 0; g < groups_.size(); ++g) wait_param_gather(static_cast<int>(g));
}

void ShardedState::drain() noexcept {
  for (auto& T : groups_) {
    try {
      T.param_gather.wait();
    } catch (...) {
    }
  }
}

void ShardedState::count(MemoryLedger& m) const {
  const int stage = ctx_.opt.stage;
  for (auto& T : groups_) {
    if (stage < 3) {
      m.parameters += static_cast<int64_t>(T.value_full.nbytes());
    } else {
      m.parameters += static_cast<int64_t>((precision_.mixed() ? T.compute_shard : T.master).nbytes());
    }
    if (stage <= 1) m.gradients += static_cast<int64_t>(T.grad_full.nbytes());
    if (T.grad_shard_owned) m.gradients += static_cast<int64_t>(T.grad_shard.nbytes());
    if (precision_.mixed()) m.optimizer_state += static_cast<int64_t>(T.master.nbytes());
  }
}

}  // namespace dtrain::parallel::detail
