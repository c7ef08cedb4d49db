// What machine this rank runs on: host, CPU, memory, and on a GPU machine the
// GPUs (model, memory, clocks, driver, CUDA and NCCL versions, peer access
// between GPU pairs). Gathered once per rank; rank 0 keeps every rank's copy
// in report.json's "environment".
#pragma once

#include <nlohmann/json.hpp>

#include "dtrain/device.h"

namespace dtrain::bench {

// Facts of this process's machine; `device` is the device the suites use.
nlohmann::json device_facts(const Device& device);

// CPU threads this rank may use: OMP_NUM_THREADS when set, else the cores
// divided among the ranks of this node.
int cpu_threads_per_rank();

}  // namespace dtrain::bench
