#include "dtrain/optim/loss_scaler.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "dtrain/error.h"

#ifdef DTRAIN_WITH_CUDA
namespace dtrain::cuda {
// kernels/all_finite.cu: true when no element of the tensors (all on one CUDA device) is inf/nan.
bool all_finite(const std::vector<Tensor>& tensors);
}  // namespace dtrain::cuda
#endif

namespace dtrain {

DynamicLossScaler::DynamicLossScaler(const LossScalerConfig& config) : config_(config), scale_(config.init_scale) {
  DTRAIN_CHECK(config.init_scale > 0.0f && std::isfinite(config.init_scale),
               "DynamicLossScaler: init_scale must be finite and > 0, got ", config.init_scale);
  DTRAIN_CHECK(config.growth_factor >= 1.0f, "DynamicLossScaler: growth_factor must be >= 1, got ",
               config.growth_factor);
  DTRAIN_CHECK(config.backoff_factor > 0.0f && config.backoff_factor < 1.0f,
               "DynamicLossScaler: backoff_factor must be in (0, 1), got ", config.backoff_factor);
  DTRAIN_CHECK(config.growth_interval >= 1, "DynamicLossScaler: growth_interval must be >= 1, got ",
               config.growth_interval);
  DTRAIN_CHECK(config.min_scale > 0.0f && config.min_scale <= config.max_scale,
               "DynamicLossScaler: need 0 < min_scale <= max_scale, got ", config.min_scale, " and ", config.max_scale);
  scale_ = std::clamp(scale_, config.min_scale, config.max_scale);
}

bool DynamicLossScaler::update(bool grads_finite) {
  if (!grads_finite) {
    scale_ = std::max(config_.min_scale, scale_ * config_.backoff_factor);
    good_steps_ = 0;
    ++skipped_steps_;
    return false;
  }
  if (++good_steps_ >= config_.growth_interval) {
    scale_ = std::min(config_.max_scale, scale_ * config_.growth_factor);
    good_steps_ = 0;
  }
  return true;
}

void DynamicLossScaler::restore(const LossScalerState& state) {
  DTRAIN_CHECK(std::isfinite(state.scale) && state.scale >= config_.min_scale && state.scale <= config_.max_scale,
               "DynamicLossScaler::restore: scale ", state.scale, " is outside this scaler's [", config_.min_scale,
               ", ", config_.max_scale, "]; the saved state is damaged or from another configuration");
  DTRAIN_CHECK(state.good_steps >= 0 && state.good_steps < config_.growth_interval && state.skipped_steps >= 0,
               "DynamicLossScaler::restore: good_steps ", state.good_steps, " / skipped_steps ", state.skipped_steps,
               " are impossible with growth_interval ", config_.growth_interval,
               " (pass the loss-scale window the run was saved with)");
  scale_ = state.scale;
  good_steps_ = state.good_steps;
  skipped_steps_ = state.skipped_steps;
}

namespace {

bool cpu_all_finite(const Tensor& t) {
  const int64_t n = t.numel();
  switch (t.dtype()) {
    case DType::f32: {
      const float* p = t.data<float>();
      for (int64_t i = 0; i < n; ++i) {
        if (!std::isfinite(p[i])) return false;
      }
      return true;
    }
    case DType::bf16:
    case DType::f16: {
      // Both formats are inf/nan exactly when every exponent bit is set.
      const auto* p = static_cast<const uint16_t*>(t.data_ptr());
      const uint16_t mask = t.dtype() == DType::bf16 ? 0x7f80u : 0x7c00u;
      for (int64_t i = 0; i < n; ++i) {
        if ((p[i] & mask) == mask) return false;
      }
      return true;
    }
    default:
      break;
  }
  DTRAIN_THROW("DynamicLossScaler::all_finite: ", t.describe(), " is not a floating tensor (f32, bf16, f16)");
}

}  // namespace

bool DynamicLossScaler::all_finite(const std::vector<Tensor>& tensors) {
  std::map<int, std::vector<Tensor>> by_device;
  bool finite = true;
  for (const Tensor& t : tensors) {
    if (!t.defined() || t.numel() == 0) continue;
    if (t.is_cpu()) {
      finite = cpu_all_finite(t) && finite;
    } else {
      DTRAIN_CHECK(is_floating(t.dtype()), "DynamicLossScaler::all_finite: ", t.describe(),
                   " is not a floating tensor (f32, bf16, f16)");
      by_device[t.device().index()].push_back(t);
    }
  }
#ifdef DTRAIN_WITH_CUDA
  for (const auto& [device, list] : by_device) finite = cuda::all_finite(list) && finite;
#else
  DTRAIN_CHECK(by_device.empty(), "DynamicLossScaler::all_finite: CUDA tensors need a CUDA build");
#endif
  return finite;
}

}  // namespace dtrain
