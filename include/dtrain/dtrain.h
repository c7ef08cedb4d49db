// Umbrella header: everything a training program needs.
#pragma once

#include "dtrain/allocator.h"
#include "dtrain/device.h"
#include "dtrain/dtype.h"
#include "dtrain/error.h"
#include "dtrain/ops.h"
#include "dtrain/tensor.h"
