// GradientReducer: turns each backward's gradients into this rank's reduced
// gradient shard. Stages 0-2 reduce a bucket the moment its last gradient is
// ready, in one launch order shared by every rank (so every rank issues the
// same sequence): the layout order in the first communicating backward, then
// the order in which the buckets actually completed in it (rank 0's record);
// stage 3 units are issued by the gather scheduler when their last user in
// backward has run (structural launch) and reduced here the same way.
//
//   stage 0: all-reduce (avg) of the full bucket; stage 1: reduce-scatter into
//   the shard of the full buffer; stages 2-3: reduce-scatter of a pooled
//   full gradient into the f32 shard, accumulating over micro-steps.
// Mixed precision reduces in f32: stage 0 casts the bucket into the f32
// gradient and all-reduces that in place; stages 1-3 cast it into a pooled
// f32 buffer (reused by the next bucket once its collective is done) and
// reduce-scatter that into the f32 shard. At world size 1 stages 0-1 issue
// nothing (the bucket is the gradient the optimizer reads) and stages 2-3
// only cast (or copy) into the shard.
#pragma once

#include <vector>

#include "parallel/buffer_pool.h"
#include "parallel/engine_context.h"
#include "parallel/layout.h"
#include "parallel/precision_policy.h"
#include "parallel/sharded_state.h"

namespace dtrain::parallel::detail {

class GradientReducer {
 public:
  GradientReducer(EngineContext& ctx, const Layout& layout, ShardedState& state, BufferPool& pool,
                  const PrecisionPolicy& precision);

  // Per backward: `micro` backward passes ran since the last step; `sync`:
  // this backward communicates (false on the non-final micro-steps of
  // stages 0-1). `structural`: stage 3 launches units itself (launch_unit).
  void begin_backward(int micro, bool sync, bool structural);
  // Gives a group its full gradient buffer (stages 2-3: from the pool, zeroed).
  void bind_grads(int g);
  // A parameter's gradient is complete; issues every bucket now ready.
  void grad_ready(int param_id);
  // Stage 3: the unit's last user in backward has run.
  void launch_unit(int g);
  bool launched(int g) const { return groups_[static_cast<size_t>(g)].launched; }
  // Frees the buffers of collectives that already finished.
  void reap_completed();
  // End of a communicating backward: gradients that never arrived count as
  // zero (`seen` per parameter), so this rank still joins every collective;
  // then issues what is left.
  void complete_missing(const std::vector<int32_t>& seen);
  // Waits for every reduction and folds it into the gradient shards.
  void finish_all();
  // Stages 0-2, once, at the end of the first communicating backward (after
  // finish_all): the launch order becomes the order in which the buckets
  // completed in that backward on rank 0 (broadcast, so every rank agrees);
  // buckets completed only at its end (a parameter without a gradient) go
  // last. A collective of its own, so every rank must call it.
  void adopt_observed_order();
  bool order_adopted() const { return order_adopted_; }
  const std::vector<int>& launch_order() const { return launch_order_; }
  // Back to the state before a backward (also after each one).
  void reset();
  // Waits for every collective still in flight, ignoring errors (teardown).
  void drain() noexcept;

 private:
  struct Pending {
    int pending = 0;
    bool complete = false;
    bool launched = false;
    bool grads_bound = false;
    comm::Work work;
    Tensor out;        // the collective's output (grad_shard itself, or a temporary to add)
    Tensor in_flight;  // stages 2-3: the full gradient a reduce-scatter still reads
    Tensor staging;    // mixed precision stages 1-3: the pooled f32 copy a reduce-scatter reads
    bool add_after = false;
  };
  void launch(int g);
  // What a reduce-scatter reads: the bucket itself (f32), or its copy in a
  // pooled f32 buffer (mixed precision; P.staging, given back in finish).
  Tensor reduction_input(Pending& P, const GroupLayout& G, const Tensor& grad_full);
  void launch_ready();
  void finish(int g);

  EngineContext& ctx_;
  const Layout& layout_;
  ShardedState& state_;
  BufferPool& pool_;
  const PrecisionPolicy& precision_;
  std::vector<Pending> groups_;
  std::vector<int> launch_order_;  // order of gradient collectives, the same on every rank
  std::vector<int> completed_;     // buckets in the order they completed in this backward
  bool order_adopted_ = false;
  size_t next_launch_ = 0;
  int micro_ = 0;
  bool sync_ = true;
  bool structural_ = false;
};

}  // namespace dtrain::parallel::detail
