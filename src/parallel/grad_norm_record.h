// GradNormRecord: the last step's global gradient norm, and the engine's
// count of device-to-host reads (DataParallel::host_reads). With the norm
// kept on the device (DataParallelOptions::grad_norm_on_device) the squared
// norm stays a device tensor until someone asks for it
// (DataParallel::last_grad_norm), so a step reads nothing back; otherwise
// step() reads it at once, which is counted here. Every read of a device
// value the engine makes for a step goes through read(), on the CPU too,
// where the count is the accounting tests check.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>

#include "dtrain/tensor.h"

namespace dtrain::parallel::detail {

class GradNormRecord {
 public:
  // Reads a [1] f32 device value to the host now (counted).
  double read(const Tensor& value) {
    ++host_reads_;
    return value.to(Device::cpu()).item(0);
  }
  // The norm of this step, already on the host.
  void set(float norm) {
    value_ = norm;
    pending_ = Tensor();
  }
  // The norm of this step is sqrt(norm_squared) / loss_scale, read when asked.
  void defer(Tensor norm_squared, float loss_scale) {
    pending_ = std::move(norm_squared);
    loss_scale_ = loss_scale;
  }
  // The last step's norm (NaN before the first step); reads a deferred one
  // (the same float operations as step()'s host path).
  float value() {
    if (pending_.defined()) {
      value_ = std::sqrt(static_cast<float>(read(pending_))) / loss_scale_;
      pending_ = Tensor();
    }
    return value_;
  }
  int64_t host_reads() const { return host_reads_; }

 private:
  Tensor pending_;
  float loss_scale_ = 1.0f;
  float value_ = std::numeric_limits<float>::quiet_NaN();
  int64_t host_reads_ = 0;
};

}  // namespace dtrain::parallel::detail
