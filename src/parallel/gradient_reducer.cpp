#include "parallel/gradient_reducer.h"

#include <algorithm>

#include "dtrain/ops.h"

namespace dtrain::parallel::detail {

GradientReducer::GradientReducer(EngineContext& ctx, const Layout& layout, ShardedState& state, BufferPool& pool,
                                 const PrecisionPolicy& precision)
    : ctx_(ctx), layout_(layout), state_(state), pool_(pool), precision_(precision), groups_(layout.groups.size()) {
  for (size_t g = 0; g < groups_.size(); ++g) launch_order_.push_back(static_cast<int>(g));
  // Units finish backward last-first.
  if (ctx_.opt.stage == 3) std::reverse(launch_order_.begin(), launch_order_.end());
  reset();
}

void GradientReducer::reset() {
  for (size_t g = 0; g < groups_.size(); ++g) {
    Pending& P = groups_[g];
    P.pending = static_cast<int>(layout_.groups[g].slots.size());
    P.complete = false;
    P.launched = false;
    P.grads_bound = ctx_.opt.stage <= 1;
  }
  next_launch_ = 0;
  completed_.clear();
}

void GradientReducer::begin_backward(int micro, bool sync, bool structural) {
  micro_ = micro;
  sync_ = sync;
  structural_ = structural;
}

void GradientReducer::bind_grads(int g) {
  Pending& P = groups_[static_cast<size_t>(g)];
  if (P.grads_bound) return;
  const GroupLayout& G = layout_.groups[static_cast<size_t>(g)];
  GroupTensors& T = state_[static_cast<size_t>(g)];
  T.grad_full = pool_.take(G.info.padded_numel, precision_.compute_dtype());
  T.grad_full.zero_();
  for (auto& s : G.slots) s.param->rebind_grad(slot_view(T.grad_full, s), false);
  P.grads_bound = true;
}

void GradientReducer::grad_ready(int param_id) {
  const int g = layout_.param_group[static_cast<size_t>(param_id)];
  Pending& P = groups_[static_cast<size_t>(g)];
  DTRAIN_CHECK(!P.launched, "DataParallel: the gradient of '", layout_.param_name(param_id),
               "' became ready after its unit '", layout_.groups[static_cast<size_t>(g)].info.name,
               "' was reduced (the last module using a unit in "
               "backward must be the first one using it in forward)");
  if (--P.pending == 0) {
    P.complete = true;
    completed_.push_back(g);
    if (sync_ && ctx_.opt.overlap && !structural_) launch_ready();
  }
}

void GradientReducer::launch_unit(int g) {
  Pending& P = groups_[static_cast<size_t>(g)];
  if (!sync_ || !ctx_.opt.overlap || P.launched) return;
  P.complete = true;
  launch(g);
}

void GradientReducer::launch_ready() {
  while (next_launch_ < launch_order_.size() && groups_[static_cast<size_t>(launch_order_[next_launch_])].complete) {
    if (!groups_[static_cast<size_t>(launch_order_[next_launch_])].launched) launch(launch_order_[next_launch_]);
    ++next_launch_;
  }
}

Tensor GradientReducer::reduction_input(Pending& P, const GroupLayout& G, const Tensor& grad_full) {
  if (!precision_.mixed()) return grad_full;
  P.staging = pool_.take(G.info.padded_numel, DType::f32);  // back to the pool in finish()
  precision_.to_f32(P.staging, grad_full);
  return P.staging;
}

void GradientReducer::launch(int g) {
  Pending& P = groups_[static_cast<size_t>(g)];
  const GroupLayout& G = layout_.groups[static_cast<size_t>(g)];
  GroupTensors& T = state_[static_cast<size_t>(g)];
  DTRAIN_CHECK(P.grads_bound, "DataParallel: internal: group ", G.info.name, " has no gradient buffer");
  P.launched = true;
  P.add_after = false;
  const int stage = ctx_.opt.stage;
  // Stages 0-1 at world size 1: the bucket is already the reduced gradient
  // (the optimizer reads it in place), nothing to issue.
  if (stage <= 1 && ctx_.world == 1) return;
  const size_t ev = ctx_.trace_begin("reduce", G.info.name);
  comm::Work w;
  if (stage == 0) {
    // In place: the f32 gradient itself (f32), or its f32 copy, which is the
    // gradient the optimizer reads (mixed precision).
    if (precision_.mixed()) precision_.to_f32(T.grad_shard, T.grad_full);
    w = ctx_.comm->all_reduce(T.grad_shard, comm::ReduceOp::avg);
    P.out = T.grad_shard;
  } else if (stage == 1) {
    // Under mixed precision the result lands in this rank's f32 shard, which
    // lives in the bucket's own bytes (ShardedState).
    w = ctx_.comm->reduce_scatter(reduction_input(P, G, T.grad_full), T.grad_shard, comm::ReduceOp::avg);
    P.out = T.grad_shard;
  } else {
    // Accumulate into the f32 shard: the first micro-step writes it directly.
    const bool direct = micro_ == 0;
    Tensor out = direct ? T.grad_shard : Tensor::empty({G.len}, DType::f32, ctx_.device);
    if (ctx_.world > 1) {
      w = ctx_.comm->reduce_scatter(reduction_input(P, G, T.grad_full), out, comm::ReduceOp::avg);
    } else {
      precision_.to_f32(out, T.grad_full.narrow(0, G.len));
    }
    P.out = out;
    P.add_after = !direct;
    // The full gradient is not kept: unbound now, back to the pool once the
    // collective is done with it (reap_completed / finish).
    for (auto& s : G.slots) s.param->grad = Tensor();
    P.in_flight = T.grad_full;
    T.grad_full = Tensor();
    P.grads_bound = false;
  }
  P.work = w;
  ctx_.trace_async(w, ev);
}

void GradientReducer::finish(int g) {
  Pending& P = groups_[static_cast<size_t>(g)];
  if (!P.out.defined() && !P.in_flight.defined()) return;  // already finished, or nothing was issued
  P.work.wait();
  P.work = comm::Work();
  pool_.give(P.in_flight);
  pool_.give(P.staging);
  P.in_flight = Tensor();
  P.staging = Tensor();
  GroupTensors& T = state_[static_cast<size_t>(g)];
  if (P.add_after) ops::add_(T.grad_shard, P.out);
  P.out = Tensor();
}

void GradientReducer::reap_completed() {
  for (size_t g = 0; g < groups_.size(); ++g) {
    const Pending& P = groups_[g];
    if (P.launched && P.out.defined() && P.work.is_completed()) finish(static_cast<int>(g));
  }
}

void GradientReducer::complete_missing(const std::vector<int32_t>& seen) {
  for (size_t id = 0; id < seen.size(); ++id) {
    if (seen[id]) continue;
    const int g = layout_.param_group[id];
    Pending& P = groups_[static_cast<size_t>(g)];
    if (P.launched) continue;  // stage 3: issued structurally, the missing part counted as zero
    bind_grads(g);
    if (--P.pending == 0) P.complete = true;
  }
  for (auto& P : groups_) P.complete = true;  // defensive: the counts above complete every group
  launch_ready();
}

void GradientReducer::adopt_observed_order() {
  DTRAIN_CHECK(ctx_.opt.stage <= 2 && !order_adopted_, "DataParallel: internal: bucket order adopted twice");
  std::vector<int> order = completed_;
  std::vector<char> placed(groups_.size(), 0);
  for (int g : order) placed[static_cast<size_t>(g)] = 1;
  for (int g : launch_order_) {
    if (!placed[static_cast<size_t>(g)]) order.push_back(g);  // completed only at the end of backward
  }
  if (ctx_.world > 1) {
    Tensor t = Tensor::empty({static_cast<int64_t>(order.size())}, DType::i32, Device::cpu());
    std::copy(order.begin(), order.end(), t.data<int32_t>());
    ctx_.comm->broadcast(t, 0).wait();
    std::copy(t.data<int32_t>(), t.data<int32_t>() + order.size(), order.begin());
  }
  launch_order_ = std::move(order);
  order_adopted_ = true;
}

void GradientReducer::drain() noexcept {
  for (auto& P : groups_) {
    try {
      P.work.wait();
    } catch (...) {
    }
  }
}

void GradientReducer::finish_all() {
  for (int g : launch_order_) finish(g);
}

}  // namespace dtrain::parallel::detail
