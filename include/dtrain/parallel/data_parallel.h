// DataParallel: the data-parallel engine, ZeRO stages 0-3 over a Communicator.
//
//   parallel::DataParallel dp(model, comm, options);        // starts every rank from rank 0's weights
//   optim::AdamW opt(dp.param_groups(weight_decay));        // this rank's (shard of the) parameters
//   for (step ...) {
//     for (micro = 0; micro < options.grad_accumulation; ++micro) {
//       model.forward(x, y, dp.grad_scale());   // 1 / accumulation (x loss scale for f16)
//       model.backward();                       // the engine communicates from hooks
//     }
//     dp.step(opt, lr, max_grad_norm);          // clip, update, re-gather, zero gradients
//   }
//
// Layout. Parameters are packed into flat groups. Stages 0-2: buckets in
// reverse registration order (the order gradients become ready), the first
// one small (first_bucket_bytes) so communication starts early, then up to
// bucket_bytes. Stage 3: one group per unit (a module whose type is in
// unit_types, e.g. each transformer Block, or any other module that owns
// parameters directly). Every group is padded to a multiple of the world
// size; rank r owns chunk r of every group ("its shard").
//
//   stage 0: full params, full grads; each bucket all-reduced (avg) the moment
//            its last gradient is ready, overlapping the rest of backward.
//            Buckets are issued in one order on every rank: the layout's in
//            the first step, then the order they completed in the first
//            step's backward (stages 0-2; a bucket holding a parameter that
//            got no gradient goes last, so it blocks no other).
//   stage 1: as 0 but reduce-scatter; the optimizer updates only the shard,
//            then the parameters are all-gathered (overlapping the next
//            forward: each module waits for its group's gather).
//   stage 2: bucket gradients exist only while their bucket fills and is
//            reduce-scattered into the f32 gradient shard; freed after.
//   stage 3: only the shard of the parameters is kept; a unit's parameters
//            are all-gathered before its forward and its backward (the next
//            unit's gather prefetched, prefetch_depth deep) and freed after;
//            gradients reduce-scattered per unit.
//
// Start-up. Parameters with values start from rank 0's: broadcast whole in
// stages 0-2; in stage 3 rank 0 sends each rank only its chunk, one unit at a
// time. A model built under nn::DeferredInit (shapes only, no storage) is
// initialised in place from Module::init_parameter_slice with no
// communication: in stage 3 each rank allocates and fills only its chunks,
// bitwise the same ranges of the whole initial model whatever the world
// size, so a model larger than one rank's memory starts (peak: model state
// / N; gathered units come with the first forward).
//
// Gradient accumulation: stages 0-1 skip communication on non-final micro-
// steps (no_sync) and accumulate into the full buckets; stages 2-3
// reduce-scatter every micro-step and accumulate into the f32 shard.
//
// Consistency: at the end of every communicating backward the ranks compare
// which parameters received a gradient and how often each module ran (one
// small all-reduce); a rank that skipped a gradient still joins the
// collectives (its missing gradient counts as zero), so every rank raises the
// same error naming the parameter instead of hanging. In stage 3 a module run
// a different number of times changes the gather sequence itself; that is
// caught by the communicator's timeout or DTRAIN_DEBUG_COLLECTIVES=1.
//
// Not thread-safe: one thread drives the model and the engine. The model
// must outlive the engine; after the engine is gone a stage-3 model's
// parameters stay released (take full_parameters() first if needed).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dtrain/comm/communicator.h"
#include "dtrain/nn/module.h"
#include "dtrain/optim/loss_scaler.h"
#include "dtrain/optim/optimizer.h"
#include "dtrain/parallel/memory_ledger.h"
#include "dtrain/parallel/trace.h"

namespace dtrain::parallel {

struct DataParallelOptions {
  int stage = 0;                         // ZeRO stage 0-3
  int64_t first_bucket_bytes = 1 << 20;  // stages 0-2: the first bucket (ready first, sent first)
  int64_t bucket_bytes = 25 << 20;       // stages 0-2: the others
  bool overlap = true;                   // false: all communication after backward (a baseline)
  int prefetch_depth = 1;                // stage 3: units gathered ahead of use
  int grad_accumulation = 1;             // micro-steps per optimizer step
  // f32; bf16 (bf16 params/grads, f32 master and f32 reductions); f16 (as
  // bf16 plus dynamic loss scaling). The model's parameters must already be
  // in the compute dtype (GPTConfig::param_dtype = compute_dtype = bf16/f16).
  Precision precision = Precision::f32;
  float initial_loss_scale = 65536.0f;  // f16 only (DynamicLossScaler, dtrain/optim/loss_scaler.h)
  int loss_scale_window = 2000;         // f16: steps without overflow before the scale doubles
  bool check_consistency = true;        // the end-of-backward comparison described above
  bool broadcast_parameters = true;     // start every rank from rank 0's weights (deferred ones: no need)
  // Stage 3 wrapping: modules of these types become one unit each.
  std::vector<std::string> unit_types = {"Block"};
  bool trace = false;  // record a Trace (small overhead per collective)
  // Keep the gradient norm on the device: step() computes the clip
  // coefficient there and the optimizer reads it there (AdamW), so a step
  // copies nothing to the host; StepResult::grad_norm is then NaN and
  // last_grad_norm() reads the norm when asked (e.g. when logging). A
  // non-finite norm then reaches the update (NaN parameters) instead of
  // throwing in step(). No effect under f16: the next forward's loss scale
  // depends on this step's overflow, so step() reads the norm.
  bool grad_norm_on_device = false;
};

struct StepResult {
  float grad_norm = 0.0f;  // global norm before clipping (all ranks agree); NaN with grad_norm_on_device
  bool skipped = false;    // f16: an overflow skipped the update
  float loss_scale = 1.0f;
};

// One flat group as the plan shows it.
struct GroupInfo {
  std::string name;                 // "bucket 3" or the unit's module name
  std::vector<std::string> params;  // dotted names in layout order
  int64_t numel = 0;                // real elements
  int64_t padded_numel = 0;         // multiple of the world size
  int64_t shard_offset = 0;         // this rank's chunk: [shard_offset, shard_offset + shard_numel)
  int64_t shard_numel = 0;
};

class DataParallel {
 public:
  DataParallel(nn::Module& model, std::shared_ptr<comm::Communicator> communicator, DataParallelOptions options = {});
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  const DataParallelOptions& options() const { return options_; }
  int rank() const;
  int world_size() const;

  // Groups for an optimizer over what this rank updates: the whole parameters
  // in stage 0, views of this rank's shard (split at parameter boundaries, so
  // weight decay stays per parameter) in stages 1-3. f32 master weights.
  std::vector<optim::ParamGroup> param_groups(float weight_decay) const;

  // What to pass as the model's grad_scale: 1 / grad_accumulation, times the
  // loss scale under f16.
  float grad_scale() const;

  // After grad_accumulation backward passes: global gradient norm (reduced
  // across shards), clipping, f16 overflow check, the optimizer update,
  // the parameter all-gather (stages 1-2), and zeroing of the gradients.
  // A parameter that got a gradient on no rank in the step is not updated
  // (no weight decay, optimizer state untouched), as a PyTorch optimizer
  // skips one whose gradient is None (needs check_consistency at world > 1).
  StepResult step(optim::Optimizer& optimizer, float lr, float max_grad_norm = 0.0f);

  // The last step's global gradient norm before clipping (NaN before the
  // first step); with grad_norm_on_device it is read from the device now.
  float last_grad_norm();
  // Device-to-host reads the engine made for steps since it was built: one
  // per step (the norm), none with grad_norm_on_device (bf16/f32 with
  // AdamW), plus one per last_grad_norm() that had to read. Counted on every
  // device, the CPU included, so tests can hold the engine to it.
  int64_t host_reads() const;

  // Stages 1-2: step() issues the parameter all-gather and returns; the
  // modules wait for it when they next run. Call this before reading
  // Parameter::value outside the model (e.g. saving a checkpoint).
  void wait_for_parameters();

  // f16: the dynamic loss scaler's state (for checkpoints); nullopt for f32
  // and bf16, which do not scale the loss.
  std::optional<LossScalerState> loss_scaler_state() const;
  // f16: continues the loss scaler from a saved state; throws otherwise.
  void restore_loss_scaler(const LossScalerState& state);

  // After this rank's f32 master weights were written from outside the
  // optimizer (a checkpoint load): bf16/f16 parameters are rounded from the
  // masters exactly as after a step, and in stages 1-2 every rank's shard is
  // all-gathered so each holds all the parameter values again. Collective.
  void parameters_from_masters();

  // Mean of a host value over the ranks (e.g. the loss, for printing).
  float average(float value);

  // Every parameter in full (all-gathered in stage 3; collective), by dotted
  // name, as f32 CPU copies. For tests and checkpoints.
  std::vector<std::pair<std::string, Tensor>> full_parameters();

  // The plan: groups, shard ranges, prediction. Printed by dry-run.
  const std::vector<GroupInfo>& groups() const;
  std::string describe_plan() const;
  int64_t num_parameters() const { return num_parameters_; }

  // Bytes this rank holds now (model state from the tensors themselves; pass
  // the optimizer to count its state) and the paper's prediction.
  MemoryLedger ledger(const optim::Optimizer* optimizer = nullptr) const;
  MemoryLedger predicted() const;

  Trace* trace() { return trace_.get(); }

  struct Impl;

 private:
  DataParallelOptions options_;
  int64_t num_parameters_ = 0;
  std::unique_ptr<Trace> trace_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dtrain::parallel
