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

#include "dtrain/data/addition_dataset.h"
#include "dtrain/data/byte_tokenizer.h"
#include "dtrain/data/data_loader.h"
#include "dtrain/nn/gpt.h"
#include "dtrain/nn/init.h"
#include "dtrain/nn/layers.h"
#include "dtrain/nn/module.h"
#include "dtrain/optim/adamw.h"
#include "dtrain/optim/clip.h"
#include "dtrain/optim/schedule.h"
#include "dtrain/optim/sgd.h"
