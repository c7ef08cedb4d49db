// The datasheet table. Figures are NVIDIA's published dense (non-sparse)
// peaks; sparse figures in the datasheets are twice these. Order matters:
// the first entry whose `match` occurs in the device name wins, so the more
// specific names come first.
#include "datasheet_peaks.h"

namespace dtrain::bench {
namespace {

const DatasheetPeak kPeaks[] = {
    // NVIDIA A100 Tensor Core GPU datasheet (nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf):
    // FP32 19.5, TF32 156, BF16 312 TFLOPS; A100 80GB SXM 2,039 GB/s, 80GB PCIe 1,935 GB/s,
    // 40GB 1,555 GB/s; NVLink 600 GB/s (both directions), PCIe Gen4 64 GB/s.
    {"A100 SXM4 80GB", "A100-SXM4-80GB", 312, 156, 19.5, 2039, 300, "NVIDIA A100 datasheet (r4)"},
    {"A100 80GB PCIe", "A100 80GB PCIe", 312, 156, 19.5, 1935, 32, "NVIDIA A100 datasheet (r4)"},
    {"A100 40GB", "A100", 312, 156, 19.5, 1555, 300, "NVIDIA A100 datasheet (r4)"},
    // NVIDIA H100 Tensor Core GPU datasheet (h100-datasheet-2430615): H100 SXM FP32 67, TF32 494.7
    // (989 sparse), BF16 989.5 (1,979 sparse) TFLOPS, 3.35 TB/s, NVLink 900 GB/s; H100 NVL FP32 60,
    // TF32 417.5, BF16 835, 3.9 TB/s; H100 PCIe FP32 51, TF32 378, BF16 756, 2 TB/s, PCIe Gen5 128 GB/s.
    {"H100 NVL", "H100 NVL", 835, 417.5, 60, 3900, 300, "NVIDIA H100 datasheet"},
    {"H100 PCIe", "H100 PCIe", 756, 378, 51, 2000, 64, "NVIDIA H100 datasheet"},
    {"H100 SXM", "H100", 989.5, 494.7, 67, 3350, 450, "NVIDIA H100 datasheet"},
    // NVIDIA H200 Tensor Core GPU datasheet: H200 SXM FP32 67, TF32 989 sparse, BF16 1,979 sparse
    // TFLOPS (the H100 SXM's compute), 141 GB HBM3e at 4.8 TB/s, NVLink 900 GB/s.
    {"H200 SXM", "H200", 989.5, 494.7, 67, 4800, 450, "NVIDIA H200 datasheet"},
    // NVIDIA DGX B200 / HGX B200 datasheets, 8 GPUs: FP32 600 TFLOPS, TF32 18 PFLOPS sparse, BF16
    // 36 PFLOPS sparse, HBM3e 64 TB/s, fifth-generation NVLink 1.8 TB/s per GPU (both directions);
    // divided by 8 GPUs and by 2 for dense.
    {"B200", "B200", 2250, 1125, 75, 8000, 900, "NVIDIA DGX B200 datasheet (per GPU = total / 8)"},
    // NVIDIA L40S datasheet: FP32 91.6, TF32 183 (366 sparse), BF16 362.05 (733 sparse) TFLOPS,
    // GDDR6 864 GB/s, no NVLink (PCIe Gen4 x16, 64 GB/s both directions).
    {"L40S", "L40S", 362.05, 183, 91.6, 864, 32, "NVIDIA L40S datasheet"},
};

}  // namespace

const DatasheetPeak* find_datasheet_peak(const std::string& device_name) {
  for (const DatasheetPeak& p : kPeaks)
    if (device_name.find(p.match) != std::string::npos) return &p;
  return nullptr;
}

}  // namespace dtrain::bench
