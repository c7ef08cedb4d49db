// Dynamic loss scaling for f16 training (bf16 does not need it: it has f32's
// exponent range).
//
// f16 gradients underflow to zero unless the loss is scaled up before
// backward; too large a scale overflows them to inf. The scaler keeps the
// scale as large as works:
//   - multiply the loss gradient by scale() (softmax_cross_entropy's
//     grad_scale), run backward;
//   - check_and_update(grads): if any gradient holds inf or nan, the step is
//     skipped (returns false) and the scale drops by backoff_factor; otherwise
//     the step runs with gradients multiplied by inv_scale() (AdamWConfig::
//     grad_scale), and after growth_interval good steps in a row the scale
//     grows by growth_factor.
// The check reads every gradient once (one launch and one device-to-host copy
// of a flag per CUDA device; a plain loop on the CPU).
#pragma once

#include <cstdint>
#include <vector>

#include "dtrain/tensor.h"

namespace dtrain {

struct LossScalerConfig {
  float init_scale = 65536.0f;  // 2^16
  float growth_factor = 2.0f;
  float backoff_factor = 0.5f;
  int64_t growth_interval = 2000;
  float min_scale = 1.0f;
  float max_scale = 16777216.0f;  // 2^24
};

// What a checkpoint keeps of a scaler to continue it exactly.
struct LossScalerState {
  float scale = 65536.0f;
  int64_t good_steps = 0;     // since the last change of scale
  int64_t skipped_steps = 0;  // in total
};

class DynamicLossScaler {
 public:
  explicit DynamicLossScaler(const LossScalerConfig& config = {});

  float scale() const { return scale_; }
  float inv_scale() const { return 1.0f / scale_; }

  // Records one step's outcome; returns true when the optimizer step should run.
  bool update(bool grads_finite);
  // all_finite(grads) then update(); returns true when the step should run.
  bool check_and_update(const std::vector<Tensor>& grads) { return update(all_finite(grads)); }

  int64_t good_steps() const { return good_steps_; }        // since the last change of scale
  int64_t skipped_steps() const { return skipped_steps_; }  // in total

  LossScalerState state() const { return {scale_, good_steps_, skipped_steps_}; }
  // Continues from a saved state (the config stays this scaler's); throws
  // dtrain::Error when the state is impossible for the config (scale not
  // finite or outside [min_scale, max_scale], negative counts, good_steps not
  // below growth_interval).
  void restore(const LossScalerState& state);

  // True when no element of any tensor (f32, bf16 or f16; CPU or CUDA) is inf or nan.
  static bool all_finite(const std::vector<Tensor>& tensors);

 private:
  LossScalerConfig config_;
  float scale_;
  int64_t good_steps_ = 0;
  int64_t skipped_steps_ = 0;
};

}  // namespace dtrain
