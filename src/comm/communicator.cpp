// Communicator: validation, ordering and failure handling around a backend.
//
// [Threads] Each communicator has two threads:
//  - the worker runs operations one at a time in call order (so every rank
//    runs them in the same order, and the caller can overlap them with
//    compute). Gloo operations run to completion here; NCCL ones are enqueued
//    on the communication stream and then tracked by a non-blocking poll.
//  - the watchdog (50 ms tick, store traffic every 500 ms) publishes the last
//    sequence number this rank entered, polls the job's poison key, polls
//    device work, and fails a collective that ran past the timeout, naming
//    the ranks that did not arrive. It never blocks on the transport.
// [Failure] The first failure breaks the communicator: its reason is stored,
// printed once, written to the job's poison key (so the other ranks fail
// within a watchdog tick instead of a timeout) and returned by every later
// call. A dead rank is named by the store host, which sees its connection
// drop without a goodbye (see tcp_store.cpp).
#include "dtrain/comm/communicator.h"

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "comm/backend.h"
#include "comm/cpu_reduce.h"
#include "comm/gloo/gloo_backend.h"
#include "comm/nccl/nccl_backend.h"
#include "comm/socket_util.h"
#include "comm/store_keys.h"
#include "comm/work_state.h"
#include "dtrain/comm/init.h"
#include "dtrain/error.h"
#include "dtrain/stream.h"

namespace dtrain::comm {

const char* op_kind_name(OpKind kind) {
  switch (kind) {
    case OpKind::all_reduce:
      return "all_reduce";
    case OpKind::reduce_scatter:
      return "reduce_scatter";
    case OpKind::all_gather:
      return "all_gather";
    case OpKind::broadcast:
      return "broadcast";
    case OpKind::send:
      return "send";
    case OpKind::recv:
      return "recv";
    case OpKind::all_to_all:
      return "all_to_all";
    case OpKind::barrier:
      return "barrier";
  }
  return "?";
}

namespace {

using Clock = std::chrono::steady_clock;
using detail::WorkState;

constexpr auto kTick = std::chrono::milliseconds(50);
constexpr auto kStorePollPeriod = std::chrono::milliseconds(500);

std::string rank_list(const std::vector<int>& ranks) {
  std::string s = "[";
  for (size_t i = 0; i < ranks.size(); ++i) s += (i ? ", " : "") + std::to_string(ranks[i]);
  return s + "]";
}

// "f32, 1024 elements, sum": the part of a description ranks must agree on.
std::string signature(const OpArgs& a) {
  std::ostringstream os;
  os << op_kind_name(a.kind) << "(";
  if (a.kind != OpKind::barrier) {
    const Tensor& t = a.inputs.empty() ? a.outputs[0] : a.inputs[0];
    os << dtype_name(t.dtype()) << ", ";
    if (a.inputs.size() > 1) {
      os << a.inputs.size() << " tensors of";
      for (const auto& x : a.inputs) os << " " << x.numel();
      os << " elements";
    } else {
      os << t.numel() << " elements";
    }
    if (a.kind == OpKind::all_reduce || a.kind == OpKind::reduce_scatter) os << ", " << reduce_op_name(a.reduce);
    if (a.kind == OpKind::broadcast) os << ", root " << a.root;
    if (a.kind == OpKind::send) os << ", to rank " << a.root << ", tag " << a.tag;
    if (a.kind == OpKind::recv) os << ", from rank " << a.root << ", tag " << a.tag;
    os << ", " << t.device().str();
  }
  os << ")";
  return os.str();
}

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

// The host of the TcpStore under `store` (through prefixes), for Gloo's address.
std::string store_host(const std::shared_ptr<Store>& store) {
  Store* s = store.get();
  while (auto* p = dynamic_cast<PrefixStore*>(s)) s = p->base().get();
  if (auto* t = dynamic_cast<TcpStore*>(s)) return t->host();
  return "127.0.0.1";
}

// Gloo writes to sockets without MSG_NOSIGNAL: when a peer dies, the default
// SIGPIPE action would kill this rank before it could report which peer it
// lost. Ignore SIGPIPE unless the program installed its own handler.
void ignore_sigpipe_unless_handled() {
  struct sigaction current {};
  if (::sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) ::signal(SIGPIPE, SIG_IGN);
}

bool same_storage_range(const Tensor& a, const Tensor& b) {
  return a.data_ptr() == b.data_ptr() && a.nbytes() == b.nbytes();
}

struct Task {
  std::shared_ptr<WorkState> state;
  OpArgs args;
};

}  // namespace

struct Communicator::Impl : std::enable_shared_from_this<Communicator::Impl> {
  std::shared_ptr<Store> job_store;  // root: holds the poison key
  std::shared_ptr<Store> store;      // this communicator's prefix
  std::string prefix;
  int rank = 0;
  int size = 1;
  CommOptions options;

  std::unique_ptr<Backend> gloo;
  std::unique_ptr<Backend> nccl;  // created by the worker on the first CUDA tensor
  int nccl_device = -1;

  mutable std::mutex mutex;
  std::condition_variable cv;           // worker: queue or stopping changed
  std::condition_variable watchdog_cv;  // watchdog: worker exited
  std::condition_variable exit_cv;      // shutdown: a thread exited
  std::deque<Task> queue;
  std::shared_ptr<WorkState> current;  // what the worker runs now
  std::vector<Task> launched;          // device work in flight
  std::string broken;                  // first failure; empty while healthy
  bool stopping = false;
  bool worker_exited = false;
  bool watchdog_exited = false;
  uint64_t next_seq = 0;  // collectives issued
  uint64_t next_p2p = 0;  // sends/recvs issued
  uint64_t split_count = 0;
  std::atomic<uint64_t> entered_seq{0};
  std::thread worker;
  std::thread watchdog;

  // ---- issuing ---------------------------------------------------------------

  Work enqueue(OpArgs args) {
    // [NCCL streams] Capture the caller's stream now, on the calling thread:
    // the worker that launches the op has its own (unrelated) current stream.
    const Tensor* first = !args.inputs.empty() ? &args.inputs[0] : (!args.outputs.empty() ? &args.outputs[0] : nullptr);
    if (first != nullptr && first->is_cuda())
      args.cuda_stream =
          options.cuda_stream != nullptr ? options.cuda_stream : current_stream(first->device()).native_handle();
    auto state = std::make_shared<WorkState>();
    state->op = op_kind_name(args.kind);
    state->is_collective = args.kind != OpKind::send && args.kind != OpKind::recv;
    std::string why_broken;
    {
      std::lock_guard<std::mutex> lock(mutex);
      state->sequence = state->is_collective ? ++next_seq : ++next_p2p;
      state->describe = std::string(state->op) + " #" + std::to_string(state->sequence) + " " + signature(args);
      if (!broken.empty()) {
        why_broken = broken;
      } else {
        DTRAIN_CHECK(!stopping, state->describe, " issued on a communicator that is shutting down");
        queue.push_back(Task{state, std::move(args)});
      }
    }
    if (!why_broken.empty()) {
      state->finish(
          std::make_exception_ptr(Error(state->describe + " not run: the communicator failed earlier: " + why_broken)));
    } else {
      cv.notify_one();  // only the worker waits on cv
    }
    return Work(state);
  }

  // ---- worker ------------------------------------------------------------------

  void worker_loop() {
    for (;;) {
      Task task;
      {
        std::unique_lock<std::mutex> lock(mutex);
        cv.wait(lock, [&] { return stopping || !queue.empty(); });
        if (queue.empty()) break;
        task = std::move(queue.front());
        queue.pop_front();
        if (!broken.empty()) {
          const std::string reason = broken;
          lock.unlock();
          task.state->finish(std::make_exception_ptr(
              Error(task.state->describe + " not run: the communicator failed earlier: " + reason)));
          continue;
        }
        std::lock_guard<std::mutex> slock(task.state->mutex);
        task.state->started = true;
        task.state->started_at = Clock::now();
        current = task.state;
      }
      if (task.state->is_collective) entered_seq = task.state->sequence;
      run_task(task);
      std::lock_guard<std::mutex> lock(mutex);
      current.reset();
    }
    std::lock_guard<std::mutex> lock(mutex);
    worker_exited = true;
    watchdog_cv.notify_all();
    exit_cv.notify_all();
  }

  void run_task(Task& task) {
    WorkState& s = *task.state;
    try {
      if (options.debug_collectives == 1 && s.is_collective) check_desync(task);
      Backend& backend = backend_for(task.args);
      Completion c = backend.run(task.args);
      if (c.poll) {
        {
          std::lock_guard<std::mutex> lock(s.mutex);
          if (!s.done) s.device_poll = c.poll;
        }
        std::lock_guard<std::mutex> lock(mutex);
        launched.push_back(task);  // keeps the tensors alive until the device is done
      } else {
        s.finish(nullptr);
      }
    } catch (const DesyncError& e) {
      fail_everything(e.what(), true);
    } catch (const std::exception& e) {
      fail_everything(explain_failure(s, e.what()), true);
    }
  }

  struct DesyncError : Error {
    using Error::Error;
  };

  Backend& backend_for(const OpArgs& a) {
    const Tensor* t = !a.inputs.empty() ? &a.inputs[0] : (!a.outputs.empty() ? &a.outputs[0] : nullptr);
    if (t == nullptr || t->is_cpu()) return *gloo;
    if (!nccl) {
      nccl_device = t->device().index();
      nccl = make_nccl_backend(std::make_shared<PrefixStore>("nccl", store), rank, size, nccl_device,
                               options.cuda_stream, options.timeout);
    }
    DTRAIN_CHECK(t->device().index() == nccl_device, "this communicator's NCCL backend is bound to cuda:", nccl_device,
                 " but got a tensor on ", t->device().str(), "; use one device per rank");
    return *nccl;
  }

  // [Desync] Every rank writes its signature for sequence s, waits for all,
  // and compares. Keys of s-1 can go once all ranks wrote s (they all read s-1).
  void check_desync(const Task& task) {
    const uint64_t seq = task.state->sequence;
    const std::string mine = signature(task.args);
    const std::string base = "desync/" + std::to_string(seq) + "/";
    store->set(base + std::to_string(rank), mine);
    std::vector<std::string> keys;
    keys.reserve(static_cast<size_t>(size));
    for (int r = 0; r < size; ++r) keys.push_back(base + std::to_string(r));
    store->wait(keys, options.timeout + std::chrono::seconds(2));
    std::map<std::string, std::vector<int>> groups;
    for (int r = 0; r < size; ++r) groups[store->get(keys[r])].push_back(r);
    if (seq > 1) store->delete_key("desync/" + std::to_string(seq - 1) + "/" + std::to_string(rank));
    if (groups.size() == 1) return;
    std::ostringstream os;
    os << "collective mismatch at sequence #" << seq << " (DTRAIN_DEBUG_COLLECTIVES=1): ";
    bool first = true;
    for (const auto& [sig, ranks] : groups) {
      os << (first ? "" : "; ") << (ranks.size() == 1 ? "rank " : "ranks ")
         << (ranks.size() == 1 ? std::to_string(ranks[0]) : rank_list(ranks)) << " called " << sig;
      first = false;
    }
    os << ". Every rank must call the same collectives in the same order with the same dtype, count, op and root";
    throw DesyncError(os.str());
  }

  // A transport error names no culprit; the poison key (set by the store host
  // when a rank's connection dropped, or by the rank that failed first) does.
  // The store may learn of a death a moment after the transport: wait briefly.
  std::string explain_failure(const WorkState& s, const std::string& what) {
    std::string prefix_text = s.describe + " failed on rank " + std::to_string(rank) + ": ";
    const auto until = Clock::now() + std::chrono::milliseconds(1500);
    try {
      for (;;) {
        if (auto poison = job_store->try_get(keys::kPoison))
          return prefix_text.append(*poison).append(" (transport error: ").append(what).append(")");
        if (Clock::now() >= until) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    } catch (const std::exception& e) {
      return prefix_text + what + "; and the store is unreachable (" + e.what() + ")";
    }
    return prefix_text + what;
  }

  // Records the first failure, publishes it, and fails every pending work.
  void fail_everything(const std::string& reason, bool publish) {
    std::vector<std::shared_ptr<WorkState>> victims;
    bool first = false;
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (broken.empty()) {
        broken = reason;
        first = true;
      }
      if (current) victims.push_back(current);
      for (auto& t : launched) victims.push_back(t.state);
      for (auto& t : queue) victims.push_back(t.state);
      queue.clear();
    }
    if (first) {
      std::fprintf(stderr, "[dtrain rank %d] communicator failed: %s\n", rank, reason.c_str());
      std::fflush(stderr);
      if (publish) {
        try {
          if (!job_store->check({keys::kPoison})) job_store->set(keys::kPoison, reason);
        } catch (const std::exception&) {
        }
      }
      if (nccl) nccl->abort();
    }
    for (auto& v : victims) {
      const std::string text = v->describe.empty() || reason.find(v->describe) != std::string::npos
                                   ? reason
                                   : v->describe + " failed: " + reason;
      v->finish(std::make_exception_ptr(Error(text)));
    }
    std::lock_guard<std::mutex> lock(mutex);
    launched.clear();
  }

  // ---- watchdog ----------------------------------------------------------------

  void watchdog_loop() {
    auto next_store_poll = Clock::now();
    uint64_t published = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex);
        watchdog_cv.wait_for(lock, kTick, [&] { return stopping && worker_exited; });
        if (stopping && worker_exited) break;
      }
      poll_launched();
      check_overdue();
      if (Clock::now() >= next_store_poll) {
        next_store_poll = Clock::now() + kStorePollPeriod;
        poll_store(published);
      }
    }
    std::lock_guard<std::mutex> lock(mutex);
    watchdog_exited = true;
    exit_cv.notify_all();
  }

  void poll_launched() {
    std::vector<Task> copy;
    {
      std::lock_guard<std::mutex> lock(mutex);
      copy = launched;
    }
    for (auto& t : copy) {
      std::function<bool()> poll;
      {
        std::lock_guard<std::mutex> lock(t.state->mutex);
        poll = t.state->device_poll;
      }
      try {
        if (!poll || poll()) t.state->finish(nullptr);
      } catch (const std::exception& e) {
        fail_everything(t.state->describe + " failed on rank " + std::to_string(rank) + ": " + e.what(), true);
        return;
      }
    }
    std::lock_guard<std::mutex> lock(mutex);
    launched.erase(std::remove_if(launched.begin(), launched.end(),
                                  [](const Task& t) {
                                    std::lock_guard<std::mutex> l(t.state->mutex);
                                    return t.state->done;
                                  }),
                   launched.end());
  }

  void check_overdue() {
    std::shared_ptr<WorkState> late;
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (!broken.empty()) return;
      const auto now = Clock::now();
      auto overdue = [&](const std::shared_ptr<WorkState>& s) {
        std::lock_guard<std::mutex> l(s->mutex);
        return s->started && !s->done && now - s->started_at > options.timeout;
      };
      if (current && overdue(current)) late = current;
      for (auto& t : launched)
        if (!late && overdue(t.state)) late = t.state;
    }
    if (late) fail_everything(timeout_message(*late), true);
  }

  // Names the ranks whose last entered collective is older than `s`.
  std::string timeout_message(const WorkState& s) {
    std::ostringstream os;
    os << s.describe << " timed out after " << options.timeout.count() / 1000.0 << " s on rank " << rank;
    if (!s.is_collective) {
      os << " (its peer did not post the matching operation)";
      return os.str();
    }
    try {
      std::vector<int> missing;
      std::vector<std::string> details;
      for (int r = 0; r < size; ++r) {
        uint64_t seq = r == rank ? entered_seq.load() : 0;
        if (r != rank) {
          if (auto v = store->try_get("entered/" + std::to_string(r))) seq = std::stoull(*v);
        }
        if (seq < s.sequence) {
          missing.push_back(r);
          std::string d = "rank " + std::to_string(r) + " last entered #" + std::to_string(seq);
          if (job_store->check({keys::lost(r)})) d += " and has died (lost its store connection)";
          details.push_back(d);
        }
      }
      if (missing.empty()) {
        os << ": every rank entered it, so the transport stalled (network trouble between ranks?)";
      } else {
        os << ": ranks " << rank_list(missing) << " did not arrive (";
        for (size_t i = 0; i < details.size(); ++i) os << (i ? "; " : "") << details[i];
        os << "). A rank is stuck, skipped this collective, or is slow; raise DTRAIN_TIMEOUT_S if it is just slow";
      }
    } catch (const std::exception& e) {
      os << "; the store is unreachable, so rank 0 (its host) has probably died (" << e.what() << ")";
    }
    return os.str();
  }

  void poll_store(uint64_t& published) {
    bool in_flight;
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (!broken.empty()) return;
      in_flight = current != nullptr || !launched.empty() || !queue.empty();
    }
    try {
      const uint64_t seq = entered_seq.load();
      if (seq != published) {
        store->set("entered/" + std::to_string(rank), std::to_string(seq));
        published = seq;
      }
      if (auto poison = job_store->try_get(keys::kPoison)) {
        if (in_flight)
          fail_everything(*poison, false);
        else {
          std::lock_guard<std::mutex> lock(mutex);
          if (broken.empty()) broken = *poison;
        }
      }
    } catch (const std::exception& e) {
      if (in_flight)
        fail_everything("lost the store while collectives were in flight on rank " + std::to_string(rank) +
                            " (rank 0 hosts the store: it has probably died): " + e.what(),
                        false);
    }
  }

  // ---- teardown ----------------------------------------------------------------

  void shutdown() {
    std::unique_lock<std::mutex> lock(mutex);
    if (stopping && worker_exited && watchdog_exited) return;
    stopping = true;
    cv.notify_all();
    // A healthy worker drains its queue (bounded by the timeout, enforced by
    // the watchdog); a broken one holds at most the stuck operation.
    const auto limit = Clock::now() + options.timeout + std::chrono::seconds(2);
    exit_cv.wait_until(lock, limit, [&] { return worker_exited && watchdog_exited; });
    const bool clean = worker_exited && watchdog_exited;
    lock.unlock();
    if (clean) {
      worker.join();
      watchdog.join();
    } else {
      // A thread stuck inside the transport cannot be interrupted: let it go.
      // It holds a reference to this Impl, so nothing it uses is freed.
      fail_everything("communicator destroyed while an operation was stuck", false);
      if (worker.joinable()) worker.detach();
      if (watchdog.joinable()) watchdog.detach();
    }
  }
};

// ---- Communicator ----------------------------------------------------------------

Communicator::Communicator(std::shared_ptr<Store> store, int rank, int size, CommOptions options)
    : Communicator(std::move(store), "world", rank, size, std::move(options)) {}

Communicator::Communicator(std::shared_ptr<Store> job_store, std::string prefix, int rank, int size,
                           CommOptions options)
    : impl_(std::make_shared<Impl>()) {
  DTRAIN_CHECK(job_store != nullptr, "Communicator needs a store");
  DTRAIN_CHECK(size >= 1, "Communicator size must be >= 1, got ", size);
  DTRAIN_CHECK(rank >= 0 && rank < size, "Communicator rank ", rank, " is outside [0, ", size, ")");
  auto& m = *impl_;
  ignore_sigpipe_unless_handled();
  if (options.timeout.count() <= 0) options.timeout = timeout_from_environment();
  if (options.debug_collectives < 0) options.debug_collectives = env_or(env::kDebugCollectives, "0") == "1" ? 1 : 0;
  if (options.gloo_address.empty())
    options.gloo_address = env_or(env::kGlooAddr, net::local_address_towards(store_host(job_store)));
  m.job_store = std::move(job_store);
  m.prefix = std::move(prefix);
  m.store = std::make_shared<PrefixStore>(m.prefix, m.job_store);
  m.rank = rank;
  m.size = size;
  m.options = options;
  // Gloo's own timeout is a second longer than the watchdog's, so the
  // watchdog's message (which names the ranks that did not arrive) wins.
  m.gloo = std::make_unique<GlooBackend>(std::make_shared<PrefixStore>("gloo", m.store), rank, size,
                                         options.gloo_address, options.timeout + std::chrono::seconds(1));
  // Gloo's full-mesh connect is not a barrier: a rank can finish it and exit
  // while a peer still reads the handshake on their pair ("connection closed
  // by peer"). Nobody leaves the constructor before every rank is connected.
  m.store->add("connected", 1);
  const auto deadline = Clock::now() + options.timeout;
  for (auto delay = std::chrono::microseconds(200);; delay = std::min(delay * 2, std::chrono::microseconds(20000))) {
    const auto value = m.store->try_get("connected");
    if (value && std::stoll(*value) >= size) break;
    DTRAIN_CHECK(Clock::now() < deadline, "rank ", rank, ": only ", value ? *value : "0", " of ", size,
                 " ranks finished connecting communicator '", m.prefix, "' within ", options.timeout.count() / 1000.0,
                 " s; is every rank running? (DTRAIN_TIMEOUT_S)");
    std::this_thread::sleep_for(delay);
  }
  auto self = impl_;
  m.worker = std::thread([self] { self->worker_loop(); });
  m.watchdog = std::thread([self] { self->watchdog_loop(); });
}

Communicator::~Communicator() {
  impl_->shutdown();
}

int Communicator::rank() const {
  return impl_->rank;
}
int Communicator::size() const {
  return impl_->size;
}
std::chrono::milliseconds Communicator::timeout() const {
  return impl_->options.timeout;
}
const std::shared_ptr<Store>& Communicator::store() const {
  return impl_->store;
}
uint64_t Communicator::sequence_number() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->next_seq;
}
std::string Communicator::error() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->broken;
}

namespace {

void check_tensor(const Tensor& t, const char* op, const char* what) {
  DTRAIN_CHECK(t.defined(), op, ": ", what, " is an undefined tensor");
  check_collective_dtype(t.dtype(), op);
  if (t.is_cuda()) {
    DTRAIN_CHECK(cuda_compiled(), op, ": ", what, " is on ", t.device().str(),
                 " but dtrain was built without CUDA (NCCL); use CPU tensors");
  }
}

void check_same(const Tensor& a, const Tensor& b, const char* op) {
  DTRAIN_CHECK(a.dtype() == b.dtype(), op, ": input is ", dtype_name(a.dtype()), " but output is ",
               dtype_name(b.dtype()), "; they must match");
  DTRAIN_CHECK(a.device() == b.device(), op, ": input is on ", a.device().str(), " but output on ", b.device().str(),
               "; they must be on the same device");
}

}  // namespace

Work Communicator::all_reduce(const Tensor& tensor, ReduceOp op) {
  return all_reduce(tensor, tensor, op);
}

Work Communicator::all_reduce(const Tensor& input, const Tensor& output, ReduceOp op) {
  check_tensor(input, "all_reduce", "input");
  check_tensor(output, "all_reduce", "output");
  check_same(input, output, "all_reduce");
  DTRAIN_CHECK(input.numel() == output.numel(), "all_reduce: input has ", input.numel(), " elements but output has ",
               output.numel());
  DTRAIN_CHECK(same_storage_range(input, output) || !input.overlaps(output),
               "all_reduce: input and output partly overlap; pass the same tensor (in place) or disjoint ones");
  OpArgs a;
  a.kind = OpKind::all_reduce;
  a.reduce = op;
  a.inputs = {input};
  a.outputs = {output};
  return impl_->enqueue(std::move(a));
}

Work Communicator::all_reduce_coalesced(const std::vector<Tensor>& tensors, ReduceOp op) {
  DTRAIN_CHECK(!tensors.empty(), "all_reduce_coalesced: no tensors given");
  for (const auto& t : tensors) {
    check_tensor(t, "all_reduce_coalesced", "a tensor");
    check_same(tensors[0], t, "all_reduce_coalesced");
  }
  OpArgs a;
  a.kind = OpKind::all_reduce;
  a.reduce = op;
  a.inputs = tensors;
  a.outputs = tensors;
  return impl_->enqueue(std::move(a));
}

Work Communicator::reduce_scatter(const Tensor& input, const Tensor& output, ReduceOp op) {
  check_tensor(input, "reduce_scatter", "input");
  check_tensor(output, "reduce_scatter", "output");
  check_same(input, output, "reduce_scatter");
  DTRAIN_CHECK(input.numel() == output.numel() * size(), "reduce_scatter: input has ", input.numel(),
               " elements but must have size() * output.numel() = ", size(), " * ", output.numel());
  if (input.overlaps(output)) {
    const auto* chunk = static_cast<const uint8_t*>(input.data_ptr()) + output.nbytes() * rank();
    DTRAIN_CHECK(output.data_ptr() == chunk, "reduce_scatter: output overlaps input but is not chunk ", rank(),
                 " of it; use disjoint tensors or input.narrow to this rank's chunk");
  }
  OpArgs a;
  a.kind = OpKind::reduce_scatter;
  a.reduce = op;
  a.inputs = {input};
  a.outputs = {output};
  return impl_->enqueue(std::move(a));
}

Work Communicator::all_gather(const Tensor& input, const Tensor& output) {
  check_tensor(input, "all_gather", "input");
  check_tensor(output, "all_gather", "output");
  check_same(input, output, "all_gather");
  DTRAIN_CHECK(output.numel() == input.numel() * size(), "all_gather: output has ", output.numel(),
               " elements but must have size() * input.numel() = ", size(), " * ", input.numel());
  if (input.overlaps(output)) {
    const auto* chunk = static_cast<const uint8_t*>(output.data_ptr()) + input.nbytes() * rank();
    DTRAIN_CHECK(input.data_ptr() == chunk, "all_gather: input overlaps output but is not chunk ", rank(),
                 " of it; use disjoint tensors or output.narrow to this rank's chunk");
  }
  OpArgs a;
  a.kind = OpKind::all_gather;
  a.inputs = {input};
  a.outputs = {output};
  return impl_->enqueue(std::move(a));
}

Work Communicator::broadcast(const Tensor& tensor, int root) {
  check_tensor(tensor, "broadcast", "tensor");
  DTRAIN_CHECK(root >= 0 && root < size(), "broadcast: root ", root, " is outside [0, ", size(), ")");
  OpArgs a;
  a.kind = OpKind::broadcast;
  a.inputs = {tensor};
  a.outputs = {tensor};
  a.root = root;
  return impl_->enqueue(std::move(a));
}

Work Communicator::send(const Tensor& tensor, int dst, uint32_t tag) {
  check_tensor(tensor, "send", "tensor");
  DTRAIN_CHECK(dst >= 0 && dst < size() && dst != rank(), "send: destination rank ", dst,
               " must be another rank in [0, ", size(), ")");
  OpArgs a;
  a.kind = OpKind::send;
  a.inputs = {tensor};
  a.root = dst;
  a.tag = tag;
  return impl_->enqueue(std::move(a));
}

Work Communicator::recv(const Tensor& tensor, int src, uint32_t tag) {
  check_tensor(tensor, "recv", "tensor");
  DTRAIN_CHECK(src >= 0 && src < size() && src != rank(), "recv: source rank ", src, " must be another rank in [0, ",
               size(), ")");
  OpArgs a;
  a.kind = OpKind::recv;
  a.outputs = {tensor};
  a.root = src;
  a.tag = tag;
  return impl_->enqueue(std::move(a));
}

Work Communicator::all_to_all(const Tensor& input, const Tensor& output) {
  check_tensor(input, "all_to_all", "input");
  check_tensor(output, "all_to_all", "output");
  check_same(input, output, "all_to_all");
  DTRAIN_CHECK(input.numel() == output.numel(), "all_to_all: input has ", input.numel(), " elements but output has ",
               output.numel());
  DTRAIN_CHECK(input.numel() % size() == 0, "all_to_all: ", input.numel(), " elements do not split into ", size(),
               " equal chunks");
  DTRAIN_CHECK(same_storage_range(input, output) || !input.overlaps(output),
               "all_to_all: input and output partly overlap");
  OpArgs a;
  a.kind = OpKind::all_to_all;
  a.inputs = {input};
  a.outputs = {output};
  return impl_->enqueue(std::move(a));
}

Work Communicator::barrier() {
  OpArgs a;
  a.kind = OpKind::barrier;
  return impl_->enqueue(std::move(a));
}

std::shared_ptr<Communicator> Communicator::split(int color, int key) {
  auto& m = *impl_;
  uint64_t n;
  {
    std::lock_guard<std::mutex> lock(m.mutex);
    n = ++m.split_count;
  }
  const std::string base = "split" + std::to_string(n) + "/";
  m.store->set(base + std::to_string(m.rank), std::to_string(color) + " " + std::to_string(key));
  std::vector<std::pair<int, int>> members;  // (key, parent rank)
  for (int r = 0; r < m.size; ++r) {
    std::istringstream in(m.store->get(base + std::to_string(r)));
    int c = 0, k = 0;
    in >> c >> k;
    if (c == color) members.emplace_back(k, r);
  }
  if (color < 0) return nullptr;
  std::sort(members.begin(), members.end());
  int new_rank = 0;
  for (size_t i = 0; i < members.size(); ++i)
    if (members[i].second == m.rank) new_rank = static_cast<int>(i);
  return std::shared_ptr<Communicator>(
      new Communicator(m.job_store, m.prefix + "/split" + std::to_string(n) + "/c" + std::to_string(color), new_rank,
                       static_cast<int>(members.size()), m.options));
}

#ifndef DTRAIN_WITH_CUDA
std::unique_ptr<Backend> make_nccl_backend(const std::shared_ptr<Store>&, int, int, int, void*,
                                           std::chrono::milliseconds) {
  DTRAIN_THROW("CUDA tensors need the NCCL backend, but dtrain was built without CUDA");
}
#endif

}  // namespace dtrain::comm
