#include "parallel/gather_scheduler.h"

#include <algorithm>

namespace dtrain::parallel::detail {

namespace {
bool contains(const std::vector<int>* v, int x) {
  return v != nullptr && std::find(v->begin(), v->end(), x) != v->end();
}
}  // namespace

GatherScheduler::GatherScheduler(EngineContext& ctx, const Layout& layout, ShardedState& state, BufferPool& pool,
                                 const PrecisionPolicy& precision, std::function<void(int)> unit_done)
    : ctx_(ctx),
      layout_(layout),
      state_(state),
      pool_(pool),
      precision_(precision),
      unit_done_(std::move(unit_done)),
      units_(layout.groups.size()) {}

void GatherScheduler::begin_phase(int phase) {
  phase_ = phase;
  use_index_ = 0;
}

void GatherScheduler::end_phase() {
  order_recorded_[phase_] = true;
  release_idle_except(phase_ == 0 ? kept_for_backward() : nullptr);
}

void GatherScheduler::end_backward() {
  order_recorded_[1] = true;
  release_idle();
}

void GatherScheduler::start_gather(int g) {
  Unit& U = units_[static_cast<size_t>(g)];
  if (U.state != State::released) return;
  const GroupLayout& G = layout_.groups[static_cast<size_t>(g)];
  GroupTensors& T = state_[static_cast<size_t>(g)];
  T.value_full = pool_.take(G.info.padded_numel, precision_.compute_dtype());
  const Tensor& input = precision_.mixed() ? T.compute_shard : T.master;
  const size_t ev = ctx_.trace_begin("gather", G.info.name);
  U.work = ctx_.world > 1 ? ctx_.comm->all_gather(input, T.value_full) : comm::Work();
  if (ctx_.world == 1) T.value_full.copy_(input);
  ctx_.trace_async(U.work, ev);
  U.state = State::gathering;
}

void GatherScheduler::finish_gather(int g) {
  Unit& U = units_[static_cast<size_t>(g)];
  if (U.state != State::gathering) return;
  U.work.wait();
  U.work = comm::Work();
  const Tensor& full = state_[static_cast<size_t>(g)].value_full;
  for (auto& s : layout_.groups[static_cast<size_t>(g)].slots) s.param->rebind_value(slot_view(full, s), false);
  U.state = State::gathered;
}

void GatherScheduler::release(int g) {
  Unit& U = units_[static_cast<size_t>(g)];
  if (U.state == State::released) return;
  if (U.state == State::gathering) {
    U.work.wait();  // keep the collective sequence: it was issued everywhere
    U.work = comm::Work();
  }
  for (auto& s : layout_.groups[static_cast<size_t>(g)].slots) s.param->value = Tensor();
  GroupTensors& T = state_[static_cast<size_t>(g)];
  pool_.give(T.value_full);
  T.value_full = Tensor();
  U.state = State::released;
}

void GatherScheduler::prefetch_first_units() {
  if (!order_recorded_[0] || !order_valid_[0]) return;
  for (size_t k = 0; k < order_[0].size() && k < static_cast<size_t>(std::max(0, ctx_.opt.prefetch_depth)); ++k) {
    if (const auto* gs = layout_.groups_of(order_[0][k])) {
      for (int g : *gs) start_gather(g);
    }
  }
}

void GatherScheduler::release_idle() {
  release_idle_except(nullptr);
}

void GatherScheduler::release_idle_except(const std::vector<int>* keep) {
  for (size_t g = 0; g < units_.size(); ++g) {
    if (contains(keep, static_cast<int>(g))) continue;
    if (units_[g].users == 0) release(static_cast<int>(g));
  }
}

// The units of the last module of forward stay gathered for the first module
// of backward (the same module), saving one gather per step (for GPT the
// tied embedding, its largest unit). Released at the latest by step(), which
// changes the shards.
const std::vector<int>* GatherScheduler::kept_for_backward() const {
  if (!order_recorded_[0] || order_[0].empty()) return nullptr;
  return layout_.groups_of(order_[0].back());
}

void GatherScheduler::acquire(nn::Module* m, const std::vector<int>& ids, bool backward) {
  const int ph = backward ? 1 : 0;
  if (backward && phase_ != 1) begin_phase(1);
  // Issue this module's gathers, then the prefetches, then wait for ours.
  for (int g : ids) start_gather(g);
  auto& ord = order_[ph];
  if (!order_recorded_[ph]) {
    ord.push_back(m);
  } else if (order_valid_[ph] && use_index_ < ord.size() && ord[use_index_] == m) {
    for (size_t k = 1; k <= static_cast<size_t>(std::max(0, ctx_.opt.prefetch_depth)); ++k) {
      if (use_index_ + k >= ord.size()) break;
      if (const auto* next = layout_.groups_of(ord[use_index_ + k])) {
        for (int g : *next) start_gather(g);
      }
    }
  } else {
    order_valid_[ph] = false;  // the model ran differently: stop prefetching
  }
  ++use_index_;
  for (int g : ids) {
    finish_gather(g);
    ++units_[static_cast<size_t>(g)].users;
  }
}

void GatherScheduler::release_use(nn::Module* m, const std::vector<int>& ids, bool backward, bool sync) {
  for (int g : ids) {
    // [Structural launch] A unit's reduce-scatter is issued when the last
    // module that uses it in backward has run, not when its last gradient
    // reports ready: gathers and reduce-scatters then interleave the same way
    // on every rank even if one rank's gradient is missing.
    if (backward && sync && last_backward_user_.size() == units_.size() &&
        last_backward_user_[static_cast<size_t>(g)] == m) {
      unit_done_(g);
    }
    const auto* keep = backward ? nullptr : kept_for_backward();
    const bool kept = contains(keep, g) && m == order_[0].back();
    if (--units_[static_cast<size_t>(g)].users == 0 && !kept) release(g);
  }
}

bool GatherScheduler::plan_structural_launch() {
  if (!last_backward_user_.empty() || !order_recorded_[0]) return !last_backward_user_.empty();
  std::vector<const nn::Module*> first(units_.size(), nullptr);
  for (nn::Module* m : order_[0]) {
    if (const auto* gs = layout_.groups_of(m)) {
      for (int g : *gs) {
        if (first[static_cast<size_t>(g)] == nullptr) first[static_cast<size_t>(g)] = m;
      }
    }
  }
  for (auto* f : first) {
    if (f == nullptr) return false;  // a unit unused in forward: fall back to readiness
  }
  last_backward_user_ = first;
  return true;
}

void GatherScheduler::drain() noexcept {
  for (auto& U : units_) {
    try {
      U.work.wait();
    } catch (...) {
    }
  }
}

}  // namespace dtrain::parallel::detail
