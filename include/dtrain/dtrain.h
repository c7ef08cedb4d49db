// Umbrella header: everything a training program needs.
#pragma once

#include "dtrain/allocator.h"
#include "dtrain/comm.h"
#include "dtrain/device.h"
#include "dtrain/dtype.h"
#include "dtrain/error.h"
#include "dtrain/loss_scaler.h"
#include "dtrain/ops.h"
#include "dtrain/stream.h"
#include "dtrain/tensor.h"
