// Communicator: validation, ordering and failure handling around a backend.
//
// [Threads] Each communicator has three threads:
//  - the worker runs operations one at a time in call order (so every rank
//    runs them in the same order, and the caller can overlap them with
//    compute). Gloo operations run to completion here; NCCL ones are enqueued
//    on the communication stream and then tracked by a non-blocking poll.
//  - the watchdog (50 ms tick) polls device work and fails a collective that
//    ran past the timeout. It never touches the store or the transport, so a
//    frozen store host cannot delay it.
//  - the liveness thread (liveness.h) heartbeats through the store, polls
//    the poison key and gathers the evidence about the peers that failure
//    messages are built from; it may block on the store, nobody waits on it.
// [Failure] The first failure breaks the communicator: it is translated once
// (failure_report.h: operation, sequence number, the ranks to blame and how
// that is known, what to do, the transport's text as the cause), printed
// once, written to the job's poison key (so the other ranks fail within a
// heartbeat period instead of a timeout) and returned by every later call.
// A dead rank is named by the store host, which sees its connection drop
// without a goodbye (see tcp_store.cpp); a stopped one by its heartbeat.
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
#include "comm/communicator_impl.h"
#include "comm/failure_report.h"
#include "comm/gloo/gloo_backend.h"
#include "comm/liveness.h"
#include "comm/nccl/nccl_backend.h"
#include "comm/self_backend.h"
#include "comm/socket_util.h"
#include "comm/straggler.h"
#include "comm/work_state.h"
#include "dtrain/comm/init.h"
#include "dtrain/error.h"
#include "dtrain/stream.h"

namespace dtrain::comm {

namespace {

using Clock = std::chrono::steady_clock;
using detail::WorkState;

constexpr auto kTick = std::chrono::milliseconds(50);
// How long a rank that saw a transport error waits for the store to say who
// died (the store host learns of a death a moment after the peers do).
constexpr auto kEvidenceWait = std::chrono::milliseconds(1500);
// Gloo's own timeout is this much longer than the watchdog's, so the
// watchdog's message (which names the ranks to blame) always comes first.
constexpr auto kGlooTimeoutMargin = std::chrono::seconds(2);
// Up to this many ranks, every rank reads every peer's heartbeat each period
// (3 store requests per peer); beyond it only while a collective is late.
constexpr int kAlwaysWatchRanks = 16;

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

  std::vector<int> global_ranks;       // communicator rank -> job rank
  std::unique_ptr<Liveness> liveness;  // heartbeat, poison, evidence (liveness.h)
  std::shared_ptr<StragglerMonitor> stragglers;

  std::unique_ptr<Backend> gloo;  // CPU tensors: Gloo, or the one-rank copies of single_process()
  bool self_transport = false;
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
    if (!state->is_collective) state->peer = args.root;
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
      record_wait(*task.state);
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
        // A waiter that found no poll yet sleeps on the cv (100 ms slices):
        // wake it to poll the device itself, so completion never waits for
        // the watchdog's 50 ms tick (measured on NCCL: 50 ms per collective).
        s.cv.notify_all();
        std::lock_guard<std::mutex> lock(mutex);
        launched.push_back(task);  // keeps the tensors alive until the device is done
      } else {
        s.finish(nullptr);
      }
    } catch (const DesyncError& e) {
      fail_everything(e.what(), true);
    } catch (const std::exception& e) {
      // Already failed (the watchdog or a poison came first): that account stands.
      if (error_text().empty()) fail_everything(explain_failure(s, e.what()), true);
    }
  }

  std::shared_ptr<Store> store_ref() {
    std::lock_guard<std::mutex> lock(mutex);
    return store;
  }

  std::string error_text() {
    std::lock_guard<std::mutex> lock(mutex);
    return broken;
  }

  struct DesyncError : Error {
    using Error::Error;
  };

  Backend& backend_for(const OpArgs& a) {
    const Tensor* t = !a.inputs.empty() ? &a.inputs[0] : (!a.outputs.empty() ? &a.outputs[0] : nullptr);
    if (t == nullptr || t->is_cpu()) return *gloo;
    if (!nccl) {
      nccl_device = t->device().index();
      nccl = make_nccl_backend(std::make_shared<PrefixStore>("nccl", store_ref()), rank, size, nccl_device,
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
    const std::shared_ptr<Store> store = store_ref();  // shutdown may let go of the member
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

  // [Stragglers] How long this rank waited inside a host collective that
  // finished: a late rank waits less than the others by its lag.
  void record_wait(WorkState& s) {
    if (!s.is_collective || !stragglers) return;
    double wait = 0;
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      if (!s.done || s.error) return;  // device work (NCCL) is not timed on the host
      wait = std::chrono::duration<double>(Clock::now() - s.started_at).count();
    }
    stragglers->record(s.sequence, s.op, wait);
  }

  FailureContext context_for(const WorkState& s, FailureKind kind, const std::string& cause) const {
    FailureContext c;
    c.op = s.describe;
    c.sequence = s.sequence;
    c.is_collective = s.is_collective;
    c.peer = s.peer;
    c.rank = rank;
    c.timeout_s = static_cast<double>(options.timeout.count()) / 1000.0;
    c.kind = kind;
    c.cause = cause;
    return c;
  }

  // [Failure] A transport error names no culprit; the store does (the host
  // marks a rank lost when its connection drops, a stopped rank's heartbeat
  // stops, a failed rank poisons the job). The store may learn of a death a
  // moment after the transport: ask for fresh evidence until it blames
  // somebody, at most kEvidenceWait (never longer, even if the store hangs).
  std::string explain_failure(const WorkState& s, const std::string& what,
                              std::chrono::milliseconds limit = kEvidenceWait) {
    const auto until = Clock::now() + limit;
    Evidence e = liveness->snapshot();
    while (!evidence_blames_someone(e, rank, liveness->unresponsive_after_s()) && Clock::now() < until) {
      e = liveness->refresh(std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()));
      if (!evidence_blames_someone(e, rank, liveness->unresponsive_after_s()))
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return translate_failure(context_for(s, FailureKind::transport_error, what), e, liveness->unresponsive_after_s());
  }

  // Records the first failure, fails every pending work, then publishes it
  // (asynchronously: the store may be the thing that is gone).
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
    }
    for (auto& v : victims) {
      const std::string text = v->describe.empty() || reason.find(v->describe) != std::string::npos
                                   ? reason
                                   : v->describe + " not finished: " + reason;
      v->finish(std::make_exception_ptr(Error(text)));
    }
    if (first) {
      if (publish && liveness) liveness->publish_poison(reason);
      if (nccl) nccl->abort();
    }
    std::lock_guard<std::mutex> lock(mutex);
    launched.clear();
  }

  // ---- watchdog ----------------------------------------------------------------

  void watchdog_loop() {
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex);
        // Stopping: wait for the worker, unless the communicator failed (its
        // worker may sit in a Gloo call until Gloo's own timeout).
        auto done = [&] { return stopping && (worker_exited || !broken.empty()); };
        watchdog_cv.wait_for(lock, kTick, done);
        if (done()) break;
      }
      poll_launched();
      check_overdue();
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
        // NCCL's own error (or async error): the same translation as Gloo's.
        fail_everything(explain_failure(*t.state, e.what(), std::chrono::milliseconds(500)), true);
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

  // Fails the collective that ran past the timeout, from the evidence the
  // liveness thread already holds (no store round trip here).
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
      if (size > kAlwaysWatchRanks) {
        const bool slow = current && [&] {
          std::lock_guard<std::mutex> l(current->mutex);
          return current->started && now - current->started_at > options.timeout / 4;
        }();
        liveness->watch(slow);
      }
    }
    if (late)
      fail_everything(translate_failure(context_for(*late, FailureKind::timeout, ""), liveness->snapshot(),
                                        liveness->unresponsive_after_s()),
                      true);
  }

  // ---- liveness callbacks (on the liveness thread) -----------------------------

  LocalStatus local_status() {
    std::lock_guard<std::mutex> lock(mutex);
    LocalStatus st;
    st.entered = entered_seq.load();
    if (current) st.running = current->op + " #" + std::to_string(current->sequence);
    return st;
  }

  // Another rank (or the store host) failed the job: fail what is in flight
  // with this rank's own account, which quotes the poison when it knows no more.
  void on_poison(const std::string& poison) {
    std::shared_ptr<WorkState> victim;
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (!broken.empty()) return;
      if (current)
        victim = current;
      else if (!launched.empty())
        victim = launched.front().state;
      else if (!queue.empty())
        victim = queue.front().state;
      if (!victim) {
        broken = "the job failed while this rank was idle: " + poison;
        return;
      }
    }
    fail_everything(translate_failure(context_for(*victim, FailureKind::poisoned, poison), liveness->snapshot(),
                                      liveness->unresponsive_after_s()),
                    false);
  }

  // ---- teardown ----------------------------------------------------------------

  // Returns false when a thread stuck in the transport was let go (the
  // caller then keeps this Impl alive until the process exits).
  bool shutdown() {
    std::unique_lock<std::mutex> lock(mutex);
    if (stopping && worker_exited && watchdog_exited) return true;
    stopping = true;
    cv.notify_all();
    // A healthy worker drains its queue (bounded by the timeout, enforced by
    // the watchdog). A broken one may sit in a Gloo call that only Gloo's own
    // timeout ends; the error is already known, so the rank does not wait
    // for that (survivors must exit within DTRAIN_TIMEOUT_S + 5 s).
    const auto limit = Clock::now() + (broken.empty() ? options.timeout + kGlooTimeoutMargin + std::chrono::seconds(1)
                                                      : std::chrono::milliseconds(500));
    exit_cv.wait_until(lock, limit, [&] { return worker_exited; });
    const bool worker_done = worker_exited;
    const bool healthy = broken.empty();
    const uint64_t last = next_seq;
    lock.unlock();
    // A clean goodbye: peers still waiting in a collective learn that this
    // rank left on purpose (it ran fewer collectives), not that it died.
    if (worker_done && healthy && liveness) liveness->publish_left(last);
    {
      std::unique_lock<std::mutex> l(mutex);
      exit_cv.wait_until(l, Clock::now() + std::chrono::seconds(1), [&] { return watchdog_exited; });
    }
    const bool clean = worker_done && watchdog_exited_locked();
    liveness.reset();  // bounded: a liveness thread stuck on the store is let go
    if (clean) {
      worker.join();
      watchdog.join();
    } else {
      // A thread stuck inside the transport cannot be interrupted: let it go.
      // It holds a reference to this Impl, so nothing it uses is freed. A
      // broken worker does not touch the store again, so this Impl lets go of
      // it: the store (on rank 0, its server) shuts down as usual instead of
      // living on in a thread that only process exit ends.
      fail_everything("communicator destroyed while an operation was stuck", false);
      {
        std::lock_guard<std::mutex> l(mutex);
        store.reset();
        job_store.reset();
      }
      if (worker.joinable()) worker.detach();
      if (watchdog.joinable()) watchdog.detach();
    }
    return clean;
  }

  bool watchdog_exited_locked() {
    std::lock_guard<std::mutex> lock(mutex);
    return watchdog_exited;
  }
};

Work enqueue_op(Communicator::Impl& impl, OpArgs args) {
  return impl.enqueue(std::move(args));
}

void announce_exit(Communicator& comm) {
  auto& m = *comm.impl_;
  uint64_t last = 0;
  {
    std::lock_guard<std::mutex> lock(m.mutex);
    if (!m.broken.empty() || m.stopping) return;
    last = m.entered_seq.load();
  }
  if (m.liveness) m.liveness->publish_left(last);
}

// ---- Communicator ----------------------------------------------------------------

Communicator::Communicator(std::shared_ptr<Store> store, int rank, int size, CommOptions options)
    : Communicator(std::move(store), "world", rank, size, std::move(options), {}, false) {}

std::shared_ptr<Communicator> Communicator::single_process(CommOptions options) {
  if (options.timeout.count() <= 0) options.timeout = timeout_from_environment();
  auto store = std::make_shared<MemoryStore>(options.timeout);
  return std::shared_ptr<Communicator>(new Communicator(store, "world", 0, 1, std::move(options), {}, true));
}

Communicator::Communicator(std::shared_ptr<Store> job_store, std::string prefix, int rank, int size,
                           CommOptions options, std::vector<int> global_ranks, bool self_transport)
    : impl_(std::make_shared<Impl>()) {
  DTRAIN_CHECK(job_store != nullptr, "Communicator needs a store");
  DTRAIN_CHECK(size >= 1, "Communicator size must be >= 1, got ", size);
  DTRAIN_CHECK(rank >= 0 && rank < size, "Communicator rank ", rank, " is outside [0, ", size, ")");
  auto& m = *impl_;
  ignore_sigpipe_unless_handled();
  if (options.timeout.count() <= 0) options.timeout = timeout_from_environment();
  if (options.debug_collectives < 0) options.debug_collectives = env_or(env::kDebugCollectives, "0") == "1" ? 1 : 0;
  DTRAIN_CHECK(!self_transport || size == 1, "a communicator without transport has one rank, got ", size);
  if (options.gloo_address.empty() && !self_transport)
    options.gloo_address = env_or(env::kGlooAddr, net::local_address_towards(store_host(job_store)));
  m.job_store = std::move(job_store);
  m.prefix = std::move(prefix);
  m.store = std::make_shared<PrefixStore>(m.prefix, m.job_store);
  m.rank = rank;
  m.size = size;
  m.options = options;
  m.global_ranks = std::move(global_ranks);
  if (m.global_ranks.empty())
    for (int r = 0; r < size; ++r) m.global_ranks.push_back(r);
  const std::string what = "rendezvous of communicator '" + m.prefix + "'";
  // Everybody arrives before Gloo connects, so a rank that never comes is
  // named by every rank that did (Gloo's own rendezvous would only name a key).
  arrive_and_wait(*m.store, "arrived", rank, size, options.timeout, what);
  m.self_transport = self_transport;
  if (self_transport) {
    m.gloo = make_self_backend();
  } else {
    m.gloo = std::make_unique<GlooBackend>(std::make_shared<PrefixStore>("gloo", m.store), rank, size,
                                           options.gloo_address, options.timeout + kGlooTimeoutMargin);
  }
  // Gloo's full-mesh connect is not a barrier: a rank can finish it and exit
  // while a peer still reads the handshake on their pair ("connection closed
  // by peer"). Nobody leaves the constructor before every rank is connected.
  arrive_and_wait(*m.store, "connected", rank, size, options.timeout, what + " (Gloo connections)");
  m.stragglers = std::make_shared<StragglerMonitor>(rank, size);
  std::weak_ptr<Impl> weak = impl_;
  LivenessOptions lo;
  lo.rank = rank;
  lo.size = size;
  lo.global_ranks = m.global_ranks;
  lo.timeout = options.timeout;
  lo.status = [weak] {
    auto self = weak.lock();
    return self ? self->local_status() : LocalStatus{};
  };
  lo.poisoned = [weak](const std::string& poison) {
    if (auto self = weak.lock()) self->on_poison(poison);
  };
  lo.each_period = [stragglers = m.stragglers](Store& store) { stragglers->pump(store); };
  m.liveness = std::make_unique<Liveness>(m.store, m.job_store, std::move(lo));
  // Small groups read every peer's heartbeat each period, so a silence is
  // measured from its start; large ones only while a collective is late.
  m.liveness->watch(size <= kAlwaysWatchRanks);
  auto self = impl_;
  m.worker = std::thread([self] { self->worker_loop(); });
  m.watchdog = std::thread([self] { self->watchdog_loop(); });
}

namespace {

// [Abandoned] A communicator whose worker was let go while stuck in Gloo:
// when that call returns (Gloo's own timeout, or a peer's exit), the worker
// would drop the last reference and tear the transport down (join Gloo's
// threads) on its own thread, possibly while the process exits around it.
// Kept here instead, for the life of the process; leaked on purpose so that
// static destruction never runs it either. Only failed jobs land here.
void keep_until_exit(std::shared_ptr<Communicator::Impl> impl) {
  static auto* mutex = new std::mutex;
  static auto* kept = new std::vector<std::shared_ptr<Communicator::Impl>>;
  std::lock_guard<std::mutex> lock(*mutex);
  kept->push_back(std::move(impl));
}

}  // namespace

Communicator::~Communicator() {
  if (!impl_->shutdown()) keep_until_exit(impl_);
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
std::string Communicator::straggler_warning() const {
  return impl_->stragglers ? impl_->stragglers->last_warning() : std::string();
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
  std::vector<int> global;
  for (size_t i = 0; i < members.size(); ++i) {
    if (members[i].second == m.rank) new_rank = static_cast<int>(i);
    global.push_back(m.global_ranks[static_cast<size_t>(members[i].second)]);
  }
  return std::shared_ptr<Communicator>(
      new Communicator(m.job_store, m.prefix + "/split" + std::to_string(n) + "/c" + std::to_string(color), new_rank,
                       static_cast<int>(members.size()), m.options, std::move(global), m.self_transport));
}

#ifndef DTRAIN_WITH_CUDA
std::unique_ptr<Backend> make_nccl_backend(const std::shared_ptr<Store>&, int, int, int, void*,
                                           std::chrono::milliseconds) {
  DTRAIN_THROW("CUDA tensors need the NCCL backend, but dtrain was built without CUDA");
}
#endif

}  // namespace dtrain::comm
