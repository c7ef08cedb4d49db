// Internal: the concrete allocator of each device type.
#pragma once

#include "dtrain/allocator.h"

namespace dtrain {

Allocator& cpu_allocator();
// Defined only when built with CUDA; device must be a valid CUDA index.
Allocator& cuda_allocator(int device_index);

}  // namespace dtrain
