// Learning-rate schedule: linear warm-up to max_lr, then cosine decay to
// min_lr at total_steps (held there afterwards). Steps count from 0.
#pragma once

#include <cstdint>

namespace dtrain::optim {

struct CosineSchedule {
  float max_lr = 3e-4f;
  float min_lr = 3e-5f;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;

  float lr(int64_t step) const;
};

}  // namespace dtrain::optim
