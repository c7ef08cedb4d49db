// ShardedState: the tensors that hold the model's state between steps, per
// group -- full or sharded parameter storage, gradient buffers, this rank's
// f32 master weights and gradient shard -- how they start (materialize),
// and the stage 1-2 parameter all-gather that follows each update.
//
//   value_full     stages 0-2: always; stage 3: while the unit is gathered
//                  (owned then by the gather scheduler, from the buffer pool)
//   grad_full      stages 0-1: always; stages 2-3: while the group fills in
//                  backward (owned then by the reducer, from the buffer pool)
//   master         f32 [len]: a view of value_full (f32, stages 0-2) or its own
//   compute_shard  stage 3 mixed precision: the compute-dtype copy of master
//                  that the gathers read
//   grad_shard     [len], the reduced gradient the norm and the optimizer read:
//                  stages 0-1 in f32, or at world size 1: a view of grad_full
//                  (in the compute dtype at world size 1: nothing is reduced,
//                  the bucket is the gradient, exactly);
//                  stage 0 mixed, world > 1: its own f32 tensor (the f32
//                  average of the whole bucket);
//                  stage 1 mixed, world > 1: f32 in the first bytes of
//                  grad_full (dead once its f32 copy was reduce-scattered);
//                  stages 2-3: its own f32 tensor (micro-steps accumulate in it)
#pragma once

#include <vector>

#include "dtrain/comm/communicator.h"
#include "parallel/engine_context.h"
#include "parallel/layout.h"
#include "parallel/precision_policy.h"

namespace dtrain::parallel::detail {

struct GroupTensors {
  Tensor value_full, grad_full, master, compute_shard, grad_shard;
  bool grad_shard_owned = false;  // grad_shard has storage of its own (the ledger counts it)
  // Stages 1-2: the post-update all-gather, waited for by the first module
  // that reads the group (it overlaps the next forward).
  comm::Work param_gather;
  bool param_gather_pending = false;
};

class ShardedState {
 public:
  ShardedState(EngineContext& ctx, const Layout& layout, const PrecisionPolicy& precision);

  // Builds every group's storage and rebinds the parameters to it (in stage
  // 3 they are left released). Parameters with values start from rank 0's
  // (when options.broadcast_parameters); parameters built under
  // nn::DeferredInit are initialised from model.init_parameter_slice, at
  // stage 3 only this rank's chunk.
  void materialize(const nn::Module& model);

  GroupTensors& operator[](size_t g) { return groups_[g]; }
  const GroupTensors& operator[](size_t g) const { return groups_[g]; }
  size_t size() const { return groups_.size(); }

  // What the optimizer and the norm see.
  std::vector<Tensor> grad_shards() const;
  void zero_grads();
  // Writes the updated masters back to the compute copies (mixed precision)
  // and, stages 1-2, issues the parameter all-gathers.
  void publish_update();
  void wait_param_gather(int g);
  void wait_param_gathers();
  // Waits for the parameter all-gathers still in flight, ignoring errors (teardown).
  void drain() noexcept;

  // Parameter, gradient and master bytes held between steps (the ledger's view).
  void count(MemoryLedger& m) const;

 private:
  void materialize_full(const nn::Module& model);
  Tensor gradient_shard(const Tensor& grad_full, const GroupLayout& G) const;
  void materialize_shards(const nn::Module& model);

  EngineContext& ctx_;
  const Layout& layout_;
  const PrecisionPolicy& precision_;
  std::vector<GroupTensors> groups_;
};

}  // namespace dtrain::parallel::detail
