// Datasheet peaks of current data-centre GPUs, the references the kernels,
// comm and train suites compare what they measure with.
#pragma once

#include <string>

namespace dtrain::bench {

struct DatasheetPeak {
  const char* model;   // as printed in reports
  const char* match;   // a substring of cudaDeviceProp::name that picks this entry
  double bf16_tflops;  // dense tensor-core BF16 (no sparsity)
  double tf32_tflops;  // dense tensor-core TF32
  double f32_tflops;   // CUDA-core FP32
  double memory_gbps;  // HBM / GDDR bandwidth, GB/s
  double link_gbps;    // GPU-to-GPU bandwidth per direction (NVLink, else PCIe), GB/s
  const char* source;  // where the figures come from
};

// The entry whose `match` occurs in `device_name`, or nullptr when the model
// is not in the table (the checks then have no datasheet reference).
const DatasheetPeak* find_datasheet_peak(const std::string& device_name);

}  // namespace dtrain::bench
