#include "dtrain/device.h"

#include <cstdlib>

#include "dtrain/error.h"

#ifdef DTRAIN_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace dtrain {

Device::Device(DeviceType type, int index) : type_(type), index_(type == DeviceType::cpu ? 0 : index) {
  DTRAIN_CHECK(index >= 0, "device index must be >= 0, got ", index);
}

Device Device::parse(const std::string& text) {
  if (text == "cpu") return Device::cpu();
  if (text == "cuda") return Device::cuda(0);
  if (text.rfind("cuda:", 0) == 0) {
    const std::string digits = text.substr(5);
    char* end = nullptr;
    const long index = std::strtol(digits.c_str(), &end, 10);
    if (!digits.empty() && end != nullptr && *end == '\0' && index >= 0 && index < 1024) {
      return Device::cuda(static_cast<int>(index));
    }
  }
  DTRAIN_THROW("cannot parse device '", text, "'; expected 'cpu', 'cuda' or 'cuda:N'");
}

std::string Device::str() const {
  return is_cpu() ? std::string("cpu") : "cuda:" + std::to_string(index_);
}

bool cuda_compiled() {
#ifdef DTRAIN_WITH_CUDA
  return true;
#else
  return false;
#endif
}

int cuda_device_count() {
#ifdef DTRAIN_WITH_CUDA
  int count = 0;
  // Any error (no driver: 35, no device: 100) means "no usable GPU".
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return count;
#else
  return 0;
#endif
}

void check_device_available(const Device& device) {
  if (device.is_cpu()) return;
  DTRAIN_CHECK(cuda_compiled(), "device ", device.str(),
               " requested but this dtrain was built without CUDA; rebuild with -DDTRAIN_WITH_CUDA=ON or use cpu");
  const int count = cuda_device_count();
  DTRAIN_CHECK(device.index() < count, "device ", device.str(), " requested but ", count,
               " CUDA device(s) are visible; check CUDA_VISIBLE_DEVICES and the driver, or use cpu");
}

}  // namespace dtrain
