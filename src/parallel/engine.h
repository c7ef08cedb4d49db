// DataParallel::Impl: the engine assembled from its pieces -- the layout,
// the precision policy, the sharded state, the buffer pool, the gradient
// reducer, the ZeRO-3 gather scheduler and the consistency check -- and the
// module hooks that drive them during forward and backward. The pieces know
// nothing of one another; this is the one place that wires them.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "dtrain/parallel/data_parallel.h"
#include "parallel/buffer_pool.h"
#include "parallel/consistency_check.h"
#include "parallel/engine_context.h"
#include "parallel/gather_scheduler.h"
#include "parallel/grad_norm_record.h"
#include "parallel/gradient_reducer.h"
#include "parallel/layout.h"
#include "parallel/precision_policy.h"
#include "parallel/sharded_state.h"

namespace dtrain::parallel {

struct DataParallel::Impl {
  Impl(nn::Module& model, std::shared_ptr<comm::Communicator> comm, const DataParallelOptions& options, Trace* trace);
  ~Impl();
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  nn::Module& model;
  detail::EngineContext ctx;
  detail::PrecisionPolicy precision;
  detail::Layout layout;
  detail::BufferPool pool;
  detail::ShardedState state;
  detail::GradientReducer reducer;
  std::unique_ptr<detail::GatherScheduler> gathers;  // stage 3 only
  detail::ConsistencyCheck consistency;
  detail::GradNormRecord norm;  // the last step's gradient norm, and the engine's device-to-host reads

  int micro = 0;  // backward passes since the last step
  bool in_backward = false;
  bool sync_this_backward = true;
  int64_t activation_estimate = 0;  // set at each step() from the device's peak

  int stage() const { return ctx.opt.stage; }

  // The end of an applied step (data_parallel_step.cpp): publish the update,
  // zero the gradients, prefetch the next forward's first units.
  void finish_update();

  // ---- hooks (data_parallel.cpp) ----
  void install_hooks();
  void begin_forward();
  void end_forward();
  void begin_backward();
  void end_backward();
  void acquire(nn::Module* m, const std::vector<int>& ids, bool backward);
  void release_use(nn::Module* m, const std::vector<int>& ids, bool backward);
  void on_grad_ready(nn::Parameter& p);

 private:
  std::vector<std::pair<nn::Module*, int>> hooks_;  // (module, hook id), removed at destruction
  std::unordered_map<const nn::Module*, size_t> compute_event_;
  size_t forward_event_ = 0, backward_event_ = 0;
};

}  // namespace dtrain::parallel
