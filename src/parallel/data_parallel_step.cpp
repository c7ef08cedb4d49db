// DataParallel::step: the optimizer step of the engine -- the global gradient
// norm over every rank's shard, the f16 overflow decision (precision policy),
// clipping and loss-scale folded into the optimizer's gradient scale (on the
// host, or with grad_norm_on_device as a device tensor the optimizer reads),
// the update (parameters that got no gradient on any rank left alone), and
// publishing the updated shards (casts to the compute dtype, stage 1-2
// all-gathers, stage 3 prefetch of the next forward's first units).
#include <algorithm>
#include <cmath>
#include <limits>

#include "dtrain/allocator.h"
#include "dtrain/ops.h"
#include "dtrain/optim/clip.h"
#include "parallel/engine.h"
#include "parallel/unused_parameters.h"

namespace dtrain::parallel {

StepResult DataParallel::step(optim::Optimizer& optimizer, float lr, float max_grad_norm) {
  Impl& d = *impl_;
  DTRAIN_CHECK(!d.in_backward, "DataParallel::step called inside backward");
  DTRAIN_CHECK(d.micro == options_.grad_accumulation, "DataParallel::step: ", d.micro,
               " backward pass(es) since the last step, expected grad_accumulation = ", options_.grad_accumulation);
  d.state.wait_param_gathers();              // the master shares storage with the last all-gather's input
  if (d.gathers) d.gathers->release_idle();  // gathered copies go stale with the update
  const size_t ev = d.ctx.trace_begin("step", "optimizer");
  {
    // Activations: what the device peaked at (since the caller's last
    // reset_peak_memory) beyond model state and communication buffers.
    const MemoryLedger m = ledger(&optimizer);
    d.activation_estimate =
        std::max<int64_t>(0, memory_stats(d.ctx.device).peak_bytes - m.model_state() - m.comm_buffers);
  }
  StepResult r;
  r.loss_scale = d.precision.loss_scale();
  // Global norm: every rank's shard, summed over ranks (stage 0: the full gradients, already equal).
  Tensor sq = Tensor::empty({1}, DType::f32, d.ctx.device);
  ops::global_norm_squared(sq, d.state.grad_shards());
  if (options_.stage >= 1 && d.ctx.world > 1) d.ctx.comm->all_reduce(sq, comm::ReduceOp::sum).wait();
  std::vector<std::string> unused;
  for (int id : d.consistency.unused_in_step(d.ctx.world)) unused.push_back(d.layout.param_name(id));
  d.consistency.reset_step();
  // On the device: the clip coefficient is computed where the norm is and
  // the optimizer reads it there; the host reads nothing (f16 cannot: the
  // next forward's loss scale depends on this step's overflow).
  if (options_.grad_norm_on_device && !d.precision.scales_loss() && optimizer.reads_scale_on_device()) {
    Tensor coefficient = Tensor::empty({1}, DType::f32, d.ctx.device);
    ops::clip_coefficient(coefficient, sq, max_grad_norm, r.loss_scale);
    d.norm.defer(sq, r.loss_scale);
    r.grad_norm = std::numeric_limits<float>::quiet_NaN();  // last_grad_norm() reads it when asked
    detail::FrozenForStep frozen(optimizer, unused);
    optimizer.step_scaled_by(lr, coefficient);
    frozen.restore();
    d.finish_update();
    d.ctx.trace_end(ev);
    return r;
  }
  const float scaled_norm = std::sqrt(static_cast<float>(d.norm.read(sq)));  // the step's one device-to-host read
  r.grad_norm = scaled_norm / r.loss_scale;
  d.norm.set(r.grad_norm);
  if (!d.precision.accept_step(scaled_norm)) {  // f16 overflow: skip, the scale backs off
    r.skipped = true;
    d.state.zero_grads();
    d.micro = 0;
    d.ctx.trace_end(ev);
    return r;
  }
  const float clip = optim::clip_scale(r.grad_norm, max_grad_norm);
  detail::FrozenForStep frozen(optimizer, unused);  // used on no rank: no update, no decay
  optimizer.step(lr, clip / r.loss_scale);
  frozen.restore();
  d.finish_update();
  d.ctx.trace_end(ev);
  return r;
}

// Updated shards back to the compute copies, then everyone's parameters:
// issued here, waited for by the first module that reads a group in the
// next forward (or by anything else that needs the values, see
// wait_for_parameters), so the all-gather overlaps the next forward.
void DataParallel::Impl::finish_update() {
  state.publish_update();
  state.zero_grads();
  micro = 0;
  if (gathers) gathers->prefetch_first_units();
}

float DataParallel::last_grad_norm() {
  return impl_->norm.value();
}

int64_t DataParallel::host_reads() const {
  return impl_->norm.host_reads();
}

}  // namespace dtrain::parallel
