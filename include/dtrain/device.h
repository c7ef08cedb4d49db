// Where a tensor lives: the host (cpu) or one CUDA device (cuda:N).
#pragma once

#include <string>

namespace dtrain {

enum class DeviceType : uint8_t { cpu, cuda };

class Device {
 public:
  Device() = default;
  Device(DeviceType type, int index = 0);
  // Parses "cpu", "cuda" (= cuda:0) or "cuda:N"; throws dtrain::Error otherwise.
  static Device parse(const std::string& text);
  static Device cpu() { return Device(DeviceType::cpu, 0); }
  static Device cuda(int index = 0) { return Device(DeviceType::cuda, index); }

  DeviceType type() const { return type_; }
  int index() const { return index_; }
  bool is_cpu() const { return type_ == DeviceType::cpu; }
  bool is_cuda() const { return type_ == DeviceType::cuda; }
  std::string str() const;

  bool operator==(const Device& other) const { return type_ == other.type_ && index_ == other.index_; }
  bool operator!=(const Device& other) const { return !(*this == other); }

 private:
  DeviceType type_ = DeviceType::cpu;
  int index_ = 0;
};

// True when dtrain was compiled with CUDA support.
bool cuda_compiled();
// Number of usable CUDA devices; 0 when none, when the driver is missing, or
// when dtrain was built without CUDA (never throws).
int cuda_device_count();
// Throws a dtrain::Error explaining why `device` cannot be used, if it cannot.
void check_device_available(const Device& device);

}  // namespace dtrain
