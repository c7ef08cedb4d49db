// Streams and events: the order in which device work runs.
//
// Every CUDA device has one compute stream, on which ops launch by default,
// and a small pool of side streams (for communication or copies that should
// overlap compute). Each thread has a current stream per device; ops run on
// the current stream of their tensors' device. Streams are plain handles
// (copyable values) that live as long as the process, so a handle never
// dangles. On the CPU every stream operation is a no-op: CPU ops are
// synchronous.
//
// Memory and streams: a tensor's block returns to the caching allocator when
// the last handle goes, and may be handed to the next allocation on the same
// stream at once (stream order makes that safe). If a tensor is used on another
// stream, call record_stream(tensor, stream) so its block waits for that work.
//
// This header has no CUDA includes: native handles are `void*` (cudaStream_t,
// cudaEvent_t) for code that talks to CUDA directly.
#pragma once

#include <memory>

#include "dtrain/device.h"

namespace dtrain {

class Event;
class Tensor;

class Stream {
 public:
  Stream() = default;  // the CPU stream
  // The device's compute stream (created on first use).
  static Stream compute(const Device& device);
  // One of the device's side streams, round robin over a fixed pool
  // (kSideStreams per device); high priority streams are a pool of their own.
  static Stream side(const Device& device, bool high_priority = false);
  static constexpr int kSideStreams = 4;

  const Device& device() const { return device_; }
  void* native_handle() const { return handle_; }  // cudaStream_t; nullptr on the CPU
  // Blocks the host until all work queued so far on this stream is done.
  void synchronize() const;
  // True when all work queued so far is done (never blocks).
  bool query() const;
  // Work queued on this stream after this call waits for `event`.
  void wait(const Event& event) const;
  // Shorthand: work queued here after this call waits for what is queued on `other` now.
  void wait(const Stream& other) const;

  bool operator==(const Stream& other) const { return device_ == other.device_ && handle_ == other.handle_; }
  bool operator!=(const Stream& other) const { return !(*this == other); }

 private:
  friend Stream current_stream(const Device& device);
  Stream(Device device, void* handle) : device_(device), handle_(handle) {}
  Device device_;
  void* handle_ = nullptr;
};

// The calling thread's current stream for `device` (its compute stream unless set).
Stream current_stream(const Device& device);
// Makes `stream` the calling thread's current stream for its device.
void set_current_stream(const Stream& stream);

// Sets the current stream for its scope, then restores the previous one.
class StreamGuard {
 public:
  explicit StreamGuard(const Stream& stream);
  ~StreamGuard();
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

 private:
  Stream previous_;
};

// A point in a stream's work. Copies share one underlying event.
class Event {
 public:
  // Timing costs a little on every record; enable it only to measure.
  explicit Event(bool enable_timing = false);
  // Captures the work queued on `stream` so far (re-recording moves the point).
  void record(const Stream& stream);
  // Blocks the host until the recorded work is done (returns at once if never recorded).
  void synchronize() const;
  // True when the recorded work is done, or nothing was recorded.
  bool query() const;
  // Milliseconds between this event and `end` (both recorded, timing enabled).
  float elapsed_ms(const Event& end) const;
  bool recorded() const;
  void* native_handle() const;  // cudaEvent_t; nullptr before the first record on a CUDA stream

 private:
  struct State;
  std::shared_ptr<State> state_;
};

// Blocks until all work on every stream of `device` is done.
void synchronize(const Device& device);

// Marks `tensor`'s memory as used by work queued on `stream` so far: the
// caching allocator will not reuse its block before that work is done.
void record_stream(const Tensor& tensor, const Stream& stream);

}  // namespace dtrain
