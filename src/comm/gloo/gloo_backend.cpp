#include "comm/gloo/gloo_backend.h"

#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/alltoall.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/rendezvous/context.h>
#include <gloo/transport/tcp/device.h>
#include <gloo/transport/unbound_buffer.h>

#include <cstdlib>
#include <cstring>
#include <thread>

#include "comm/cpu_reduce.h"
#include "comm/gloo/gloo_device.h"
#include "comm/gloo/gloo_store_adapter.h"
#include "comm/gloo/pair_auth.h"
#include "dtrain/error.h"

namespace dtrain::comm {

namespace {

// Gloo templates need a C++ element type only for its size; 16-bit floats
// travel as uint16_t.
template <typename F>
void with_element_type(DType dtype, F&& f) {
  switch (dtype) {
    case DType::f32:
      return f(float{});
    case DType::bf16:
    case DType::f16:
      return f(uint16_t{});
    case DType::i32:
      return f(int32_t{});
    case DType::i64:
      return f(int64_t{});
    default:
      check_collective_dtype(dtype, "gloo");
  }
}

// Slots for point-to-point messages live far above those Gloo's collectives use.
constexpr uint64_t kP2pSlotBase = uint64_t{1} << 40;

}  // namespace

struct GlooBackend::PendingSend {
  std::unique_ptr<gloo::transport::UnboundBuffer> buffer;
  Tensor keep_alive;
  int peer = 0;
  std::mutex mutex;
  bool done = false;
  std::string error;
};

GlooBackend::GlooBackend(std::shared_ptr<Store> store, int rank, int size, const std::string& address,
                         std::chrono::milliseconds timeout)
    : size_(size), timeout_(timeout) {
  auto device = gloo::transport::tcp::CreateDevice(gloo_device_attr(address));
  auto context = std::make_shared<gloo::rendezvous::Context>(rank, size);
  context->setTimeout(timeout);
  GlooStoreAdapter adapter(store);
  // Test hook (tests/security/test_gloo_pairs.cpp): every rank arrives before
  // Gloo connects, so "a rank that starts late" can only be staged here.
  if (const char* delay = std::getenv("DTRAIN_TEST_GLOO_CONNECT_DELAY_MS"))
    std::this_thread::sleep_for(std::chrono::milliseconds(std::atoi(delay)));
  try {
    context->connectFullMesh(adapter, device);
  } catch (const std::exception& e) {
    DTRAIN_THROW("Gloo could not connect rank ", rank, " to its ", size - 1, " peers (listening on ", address,
                 "): ", e.what(),
                 ". If ranks run on different hosts, set DTRAIN_GLOO_ADDR to an address peers can reach");
  }
  authenticate_gloo_pairs(*context, std::move(store), rank, size, timeout);  // before any collective: docs/security.md
  context_ = std::move(context);
  sender_ = std::thread([this] { sender_loop(); });
}

GlooBackend::~GlooBackend() {
  {
    std::lock_guard<std::mutex> lock(send_mutex_);
    stop_sender_ = true;
    if (waiting_send_) waiting_send_->buffer->abortWaitSend();
  }
  send_cv_.notify_all();
  sender_.join();
}

void GlooBackend::sender_loop() {
  for (;;) {
    std::shared_ptr<PendingSend> s;
    {
      std::unique_lock<std::mutex> lock(send_mutex_);
      send_cv_.wait(lock, [&] { return stop_sender_ || !sends_.empty(); });
      if (stop_sender_) break;
      s = sends_.front();
      sends_.pop_front();
      waiting_send_ = s;
    }
    std::string error;
    try {
      if (!s->buffer->waitSend(timeout_)) error = "the send was aborted";
    } catch (const std::exception& e) {
      error = e.what();
    }
    {
      std::lock_guard<std::mutex> lock(send_mutex_);
      waiting_send_.reset();
    }
    std::lock_guard<std::mutex> lock(s->mutex);
    s->done = true;
    s->error = error;
  }
  // Pending sends at shutdown fail.
  std::lock_guard<std::mutex> lock(send_mutex_);
  for (auto& s : sends_) {
    std::lock_guard<std::mutex> l(s->mutex);
    s->done = true;
    s->error = "the communicator shut down before the send completed";
  }
}

Completion GlooBackend::run(const OpArgs& a) {
  switch (a.kind) {
    case OpKind::all_reduce:
      for (size_t i = 0; i < a.inputs.size(); ++i) all_reduce(a.inputs[i], a.outputs[i], a.reduce);
      break;
    case OpKind::reduce_scatter:
      reduce_scatter(a.inputs[0], a.outputs[0], a.reduce);
      break;
    case OpKind::all_gather:
      all_gather(a.inputs[0], a.outputs[0]);
      break;
    case OpKind::broadcast:
      broadcast(a.outputs[0], a.root);
      break;
    case OpKind::all_to_all:
      all_to_all(a.inputs[0], a.outputs[0]);
      break;
    case OpKind::send:
      return send(a.inputs[0], a.root, a.tag);
    case OpKind::recv:
      recv(a.outputs[0], a.root, a.tag);
      break;
    case OpKind::barrier:
      barrier();
      break;
  }
  return {};
}

void GlooBackend::all_reduce(const Tensor& input, const Tensor& output, ReduceOp op) {
  if (input.data_ptr() != output.data_ptr()) std::memcpy(output.data_ptr(), input.data_ptr(), input.nbytes());
  const size_t n = static_cast<size_t>(output.numel());
  if (n == 0) return;
  if (size_ > 1) {
    with_element_type(output.dtype(), [&](auto zero) {
      using T = decltype(zero);
      gloo::AllreduceOptions opts(context_);
      opts.setOutput<T>(static_cast<T*>(output.data_ptr()), n);
      opts.setReduceFunction(reduce_function(output.dtype(), op));
      opts.setTimeout(timeout_);
      gloo::allreduce(opts);
    });
  }
  if (op == ReduceOp::avg) divide_in_place(output.dtype(), output.data_ptr(), n, size_);
}

// Gloo's only reduce-scatter is the halving-doubling class; instead: one
// all-to-all (each rank receives chunk r from everybody, (n-1)/n of the data
// on the wire, as a ring reduce-scatter) followed by a local reduction.
void GlooBackend::reduce_scatter(const Tensor& input, const Tensor& output, ReduceOp op) {
  const size_t n = static_cast<size_t>(output.numel());
  if (n == 0) return;
  const size_t chunk_bytes = output.nbytes();
  Tensor gathered = Tensor::empty({static_cast<int64_t>(n) * size_}, output.dtype());
  if (size_ > 1) {
    gloo::AlltoallOptions opts(context_);
    opts.setInput<uint8_t>(static_cast<uint8_t*>(input.data_ptr()), chunk_bytes * size_);
    opts.setOutput<uint8_t>(static_cast<uint8_t*>(gathered.data_ptr()), chunk_bytes * size_);
    opts.setTimeout(timeout_);
    gloo::alltoall(opts);
  } else {
    std::memcpy(gathered.data_ptr(), input.data_ptr(), chunk_bytes);
  }
  const ReduceFn fn = reduce_function(output.dtype(), op);
  const auto* g = static_cast<const uint8_t*>(gathered.data_ptr());
  // output may be a view of input (in place): the data is already in `gathered`.
  std::memcpy(output.data_ptr(), g, chunk_bytes);
  for (int r = 1; r < size_; ++r) fn(output.data_ptr(), output.data_ptr(), g + r * chunk_bytes, n);
  if (op == ReduceOp::avg) divide_in_place(output.dtype(), output.data_ptr(), n, size_);
}

void GlooBackend::all_gather(const Tensor& input, const Tensor& output) {
  const size_t bytes = input.nbytes();
  if (bytes == 0) return;
  auto* out = static_cast<uint8_t*>(output.data_ptr());
  if (size_ == 1) {
    if (out != input.data_ptr()) std::memcpy(out, input.data_ptr(), bytes);
    return;
  }
  // In place (input is our chunk of output): Gloo copies input into output,
  // and memcpy must not see the same buffer on both sides.
  Tensor source = input.overlaps(output) ? input.clone() : input;
  gloo::AllgatherOptions opts(context_);
  opts.setInput<uint8_t>(static_cast<uint8_t*>(source.data_ptr()), bytes);
  opts.setOutput<uint8_t>(out, bytes * size_);
  opts.setTimeout(timeout_);
  gloo::allgather(opts);
}

void GlooBackend::broadcast(const Tensor& tensor, int root) {
  const size_t bytes = tensor.nbytes();
  if (bytes == 0 || size_ == 1) return;
  gloo::BroadcastOptions opts(context_);
  opts.setOutput<uint8_t>(static_cast<uint8_t*>(tensor.data_ptr()), bytes);
  opts.setRoot(root);
  opts.setTimeout(timeout_);
  gloo::broadcast(opts);
}

void GlooBackend::all_to_all(const Tensor& input, const Tensor& output) {
  const size_t bytes = input.nbytes();
  if (bytes == 0) return;
  if (size_ == 1) {
    if (output.data_ptr() != input.data_ptr()) std::memcpy(output.data_ptr(), input.data_ptr(), bytes);
    return;
  }
  Tensor source = input.overlaps(output) ? input.clone() : input;
  gloo::AlltoallOptions opts(context_);
  opts.setInput<uint8_t>(static_cast<uint8_t*>(source.data_ptr()), bytes);
  opts.setOutput<uint8_t>(static_cast<uint8_t*>(output.data_ptr()), bytes);
  opts.setTimeout(timeout_);
  gloo::alltoall(opts);
}

Completion GlooBackend::send(const Tensor& tensor, int peer, uint32_t tag) {
  if (tensor.nbytes() == 0) return {};
  auto pending = std::make_shared<PendingSend>();
  pending->keep_alive = tensor;
  pending->peer = peer;
  pending->buffer = context_->createUnboundBuffer(tensor.data_ptr(), tensor.nbytes());
  pending->buffer->send(peer, kP2pSlotBase + tag);
  {
    std::lock_guard<std::mutex> lock(send_mutex_);
    sends_.push_back(pending);
  }
  send_cv_.notify_all();
  Completion c;
  c.poll = [pending] {
    std::lock_guard<std::mutex> lock(pending->mutex);
    if (pending->done && !pending->error.empty())
      DTRAIN_THROW("send to rank ", pending->peer, " failed: ", pending->error);
    return pending->done;
  };
  return c;
}

void GlooBackend::recv(const Tensor& tensor, int peer, uint32_t tag) {
  if (tensor.nbytes() == 0) return;
  auto buffer = context_->createUnboundBuffer(tensor.data_ptr(), tensor.nbytes());
  buffer->recv(peer, kP2pSlotBase + tag);
  DTRAIN_CHECK(buffer->waitRecv(timeout_), "recv from rank ", peer, " was aborted");
}

void GlooBackend::barrier() {
  if (size_ == 1) return;
  gloo::BarrierOptions opts(context_);
  opts.setTimeout(timeout_);
  gloo::barrier(opts);
}

}  // namespace dtrain::comm
