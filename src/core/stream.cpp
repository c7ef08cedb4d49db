// Streams and events (see dtrain/stream.h). CUDA streams are created lazily,
// once per device, and never destroyed: handles stay valid for the process,
// and the caching allocator can key its free lists on them.
#include "dtrain/stream.h"

#include <array>
#include <atomic>
#include <mutex>
#include <vector>

#include "dtrain/error.h"
#include "dtrain/tensor.h"

#ifdef DTRAIN_WITH_CUDA
#include "core/cuda_caching_allocator.h"
#include "core/cuda_check.h"
#endif

namespace dtrain {

#ifdef DTRAIN_WITH_CUDA
namespace {

// All streams of one device. Streams are created "blocking" (they
// synchronise with the legacy default stream), so code elsewhere that still
// uses the default stream stays correctly ordered with dtrain's work.
struct DeviceStreams {
  cudaStream_t compute = nullptr;
  std::array<cudaStream_t, Stream::kSideStreams> side{};
  std::array<cudaStream_t, Stream::kSideStreams> side_high{};
  std::atomic<unsigned> next_side{0}, next_high{0};
};

constexpr int kMaxDevices = 64;

// Lock-free after the first call per device: every op and allocation asks.
std::array<std::atomic<DeviceStreams*>, kMaxDevices>& device_slots() {
  static std::array<std::atomic<DeviceStreams*>, kMaxDevices> slots{};
  return slots;
}

DeviceStreams& initialised_streams(const Device& device) {
  DTRAIN_CHECK(device.index() < kMaxDevices, "device ", device.str(), " is beyond the ", kMaxDevices,
               " devices dtrain supports per process");
  auto& slot = device_slots()[device.index()];
  if (DeviceStreams* s = slot.load(std::memory_order_acquire)) return *s;
  check_device_available(device);
  static std::mutex mutex;
  std::lock_guard<std::mutex> lock(mutex);
  if (DeviceStreams* s = slot.load(std::memory_order_acquire)) return *s;
  auto s = std::make_unique<DeviceStreams>();
  CudaDeviceGuard guard(device.index());
  int least = 0, greatest = 0;  // "greatest" priority is the numerically lowest value
  DTRAIN_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  DTRAIN_CUDA_CHECK(cudaStreamCreateWithPriority(&s->compute, cudaStreamDefault, least));
  for (auto& st : s->side) DTRAIN_CUDA_CHECK(cudaStreamCreateWithPriority(&st, cudaStreamDefault, least));
  for (auto& st : s->side_high) DTRAIN_CUDA_CHECK(cudaStreamCreateWithPriority(&st, cudaStreamDefault, greatest));
  slot.store(s.get(), std::memory_order_release);
  return *s.release();  // streams live for the process
}

// The thread's current stream per device index (nullptr = compute stream).
std::vector<void*>& thread_current() {
  thread_local std::vector<void*> current;
  return current;
}

// Result of cudaStreamQuery / cudaEventQuery: not ready is an answer, not an
// error, so it is cleared from the thread's last-error slot; others throw.
bool query_done(cudaError_t status) {
  if (status == cudaErrorNotReady) {
    (void)cudaGetLastError();
    return false;
  }
  DTRAIN_CUDA_CHECK(status);
  return true;
}

}  // namespace
#endif  // DTRAIN_WITH_CUDA

Stream Stream::compute(const Device& device) {
  if (device.is_cpu()) return Stream();
#ifdef DTRAIN_WITH_CUDA
  return Stream(device, initialised_streams(device).compute);
#else
  check_device_available(device);
  return Stream();
#endif
}

Stream Stream::side(const Device& device, bool high_priority) {
  if (device.is_cpu()) return Stream();
#ifdef DTRAIN_WITH_CUDA
  DeviceStreams& s = initialised_streams(device);
  const unsigned i = (high_priority ? s.next_high : s.next_side).fetch_add(1) % kSideStreams;
  return Stream(device, high_priority ? s.side_high[i] : s.side[i]);
#else
  check_device_available(device);
  return Stream();
#endif
}

void Stream::synchronize() const {
#ifdef DTRAIN_WITH_CUDA
  if (handle_ != nullptr) DTRAIN_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(handle_)));
#endif
}

bool Stream::query() const {
#ifdef DTRAIN_WITH_CUDA
  if (handle_ == nullptr) return true;
  return query_done(cudaStreamQuery(static_cast<cudaStream_t>(handle_)));
#else
  return true;
#endif
}

void Stream::wait(const Event& event) const {
#ifdef DTRAIN_WITH_CUDA
  if (handle_ == nullptr || event.native_handle() == nullptr) return;
  DTRAIN_CUDA_CHECK(
      cudaStreamWaitEvent(static_cast<cudaStream_t>(handle_), static_cast<cudaEvent_t>(event.native_handle()), 0));
#else
  (void)event;
#endif
}

void Stream::wait(const Stream& other) const {
  if (handle_ == nullptr || other.handle_ == nullptr || *this == other) return;
  Event event;
  event.record(other);
  wait(event);
}

Stream current_stream(const Device& device) {
  if (device.is_cpu()) return Stream();
#ifdef DTRAIN_WITH_CUDA
  auto& current = thread_current();
  const auto index = static_cast<size_t>(device.index());
  if (index < current.size() && current[index] != nullptr) {
    return Stream(device, current[index]);
  }
#endif
  return Stream::compute(device);
}

void set_current_stream(const Stream& stream) {
  if (stream.device().is_cpu()) return;
#ifdef DTRAIN_WITH_CUDA
  auto& current = thread_current();
  const auto index = static_cast<size_t>(stream.device().index());
  if (current.size() <= index) current.resize(index + 1, nullptr);
  current[index] = stream.native_handle();
#endif
}

StreamGuard::StreamGuard(const Stream& stream) : previous_(current_stream(stream.device())) {
  set_current_stream(stream);
}
StreamGuard::~StreamGuard() {
  set_current_stream(previous_);
}

// ---- Event -----------------------------------------------------------------

struct Event::State {
  bool enable_timing = false;
  Device device;
  void* handle = nullptr;  // cudaEvent_t, created on first record on a CUDA stream
  ~State() {
#ifdef DTRAIN_WITH_CUDA
    if (handle != nullptr) (void)cudaEventDestroy(static_cast<cudaEvent_t>(handle));  // never throw here
#endif
  }
};

Event::Event(bool enable_timing) : state_(std::make_shared<State>()) {
  state_->enable_timing = enable_timing;
}

void Event::record(const Stream& stream) {
#ifdef DTRAIN_WITH_CUDA
  if (stream.native_handle() == nullptr) return;
  CudaDeviceGuard guard(stream.device().index());
  if (state_->handle != nullptr && state_->device != stream.device()) {
    // An event belongs to one device: re-create it for the new one.
    (void)cudaEventDestroy(static_cast<cudaEvent_t>(state_->handle));
    state_->handle = nullptr;
  }
  if (state_->handle == nullptr) {
    cudaEvent_t event = nullptr;
    DTRAIN_CUDA_CHECK(
        cudaEventCreateWithFlags(&event, state_->enable_timing ? cudaEventDefault : cudaEventDisableTiming));
    state_->handle = event;
    state_->device = stream.device();
  }
  DTRAIN_CUDA_CHECK(
      cudaEventRecord(static_cast<cudaEvent_t>(state_->handle), static_cast<cudaStream_t>(stream.native_handle())));
#else
  (void)stream;
#endif
}

void Event::synchronize() const {
#ifdef DTRAIN_WITH_CUDA
  if (state_->handle != nullptr) DTRAIN_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(state_->handle)));
#endif
}

bool Event::query() const {
#ifdef DTRAIN_WITH_CUDA
  if (state_->handle == nullptr) return true;
  return query_done(cudaEventQuery(static_cast<cudaEvent_t>(state_->handle)));
#else
  return true;
#endif
}

float Event::elapsed_ms(const Event& end) const {
  DTRAIN_CHECK(state_->enable_timing && end.state_->enable_timing,
               "Event::elapsed_ms needs two events made with enable_timing = true");
  DTRAIN_CHECK(recorded() && end.recorded(), "Event::elapsed_ms needs two events recorded on a CUDA stream");
  float ms = 0.0f;
#ifdef DTRAIN_WITH_CUDA
  DTRAIN_CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(state_->handle),
                                         static_cast<cudaEvent_t>(end.state_->handle)));
#endif
  return ms;
}

bool Event::recorded() const {
  return state_->handle != nullptr;
}
void* Event::native_handle() const {
  return state_->handle;
}

void synchronize(const Device& device) {
  if (device.is_cpu()) return;
#ifdef DTRAIN_WITH_CUDA
  check_device_available(device);
  CudaDeviceGuard guard(device.index());
  DTRAIN_CUDA_CHECK(cudaDeviceSynchronize());
#endif
}

void record_stream(const Tensor& tensor, const Stream& stream) {
  if (!tensor.defined() || stream.native_handle() == nullptr) return;
  DTRAIN_CHECK(tensor.device() == stream.device(), "record_stream: tensor ", tensor.describe(), " and stream on ",
               stream.device().str(), " are on different devices");
#ifdef DTRAIN_WITH_CUDA
  cuda_allocator_record_stream(stream.device().index(), tensor.storage()->data(), stream.native_handle());
#endif
}

}  // namespace dtrain
