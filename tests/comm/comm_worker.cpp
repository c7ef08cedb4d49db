// One rank of a multi-process test. Started by the test binary (directly or
// through dtrain-run) with RANK/WORLD_SIZE/MASTER_* set; the first argument
// picks the scenario. Exit codes: 0 pass, 1 wrong result, 3 expected error
// raised (message printed), 4 an expected error did not happen.
#include <signal.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "comm/collective_specs.h"
#include "dtrain/comm.h"

using namespace dtrain;
using namespace dtrain::comm;

namespace {

int g_failures = 0;
int g_checks = 0;

const DType kDTypes[] = {DType::f32, DType::bf16, DType::f16, DType::i32, DType::i64};
const ReduceOp kOps[] = {ReduceOp::sum, ReduceOp::avg, ReduceOp::max, ReduceOp::min, ReduceOp::product};

// Small integers: exact in every dtype, so expected values are exact too.
// Products stay tiny; the others differ by rank and by position, so a chunk
// delivered to the wrong place shows.
double value(int rank, int64_t i, ReduceOp op) {
  if (op == ReduceOp::product) return static_cast<double>(((rank + i) % 2) + 1);
  return static_cast<double>((5 * rank + i) % 17 + 1);
}

double tolerance(DType dtype) {
  return collective_tolerance(dtype);
}

void expect_near(double got, double want, DType dtype, const std::string& what) {
  ++g_checks;
  // Written as "not within" so that a NaN result counts as a mismatch.
  if (!(std::fabs(got - want) <= tolerance(dtype) * std::max(1.0, std::fabs(want)))) {
    if (++g_failures <= 20) std::printf("MISMATCH %s: got %g want %g\n", what.c_str(), got, want);
  }
}

Tensor filled(int64_t n, DType dtype, const std::function<double(int64_t)>& f) {
  Tensor t = Tensor::empty({n}, dtype);
  for (int64_t i = 0; i < n; ++i) t.set_item(i, f(i));
  return t;
}

// Counts one check per output element of `b`; prints the first mismatches.
void expect_output(const CollectiveSpec& spec, const CollectiveBuffers& b, const InputValue& v, Communicator& c,
                   ReduceOp op, DType dt, int root, const char* mode) {
  std::vector<std::string> mismatches;
  g_checks += static_cast<int>(b.output.numel());
  const int64_t wrong = count_wrong(spec, b, v, c.rank(), c.size(), op, dt, root, &mismatches);
  for (const auto& m : mismatches)
    if (g_failures++ < 20)
      std::printf("MISMATCH %s/%s/%s/count=%lld/root=%d/%s: %s\n", spec.name, dtype_name(dt), reduce_op_name(op),
                  static_cast<long long>(b.count), root, mode, m.c_str());
  g_failures += static_cast<int>(wrong) - static_cast<int>(mismatches.size());
}

// Every collective of the spec table, every dtype, every reduction it takes,
// every root for broadcast: out of place and in place issued together, then
// waited (asynchronous), outputs checked, the out-of-place input untouched.
void check_collectives(Communicator& c) {
  const int r = c.rank(), w = c.size();
  for (const CollectiveSpec& spec : collective_specs())
    for (DType dt : kDTypes)
      for (ReduceOp op : kOps) {
        if (!spec.reduces && op != ReduceOp::sum) continue;
        const InputValue v = [op](int rank, int64_t i) { return value(rank, i, op); };
        for (int64_t count : {int64_t{0}, int64_t{1}, int64_t{7}, int64_t{5} * w, int64_t{100}})
          for (int root = 0; root < (spec.kind == Collective::broadcast ? w : 1); ++root) {
            CollectiveBuffers out_of_place = make_buffers(spec, count, dt, Device::cpu(), r, w, false, v);
            CollectiveBuffers in_place = make_buffers(spec, count, dt, Device::cpu(), r, w, true, v);
            Work a = issue(spec, c, out_of_place, op, root);
            Work b = issue(spec, c, in_place, op, root);
            b.wait();
            a.wait();
            expect_output(spec, out_of_place, v, c, op, dt, root, "outofplace");
            expect_output(spec, in_place, v, c, op, dt, root, "inplace");
            if (spec.kind == Collective::broadcast) continue;  // one buffer: its input is its output
            for (int64_t i = 0; i < out_of_place.input.numel(); ++i)
              expect_near(out_of_place.input.item(i), v(r, i), dt, std::string(spec.name) + "/input-untouched");
          }
      }
}

void check_p2p_and_misc(Communicator& c) {
  const int r = c.rank(), w = c.size();
  c.barrier().wait();
  if (w > 1) {
    // Ring: send to the right, receive from the left; even ranks send first.
    const int right = (r + 1) % w, left = (r + w - 1) % w;
    for (DType dt : kDTypes) {
      Tensor mine = filled(9, dt, [&](int64_t i) { return r * 2 + i; });
      Tensor got = Tensor::zeros({9}, dt);
      Work s = c.send(mine, right, 5);
      Work g = c.recv(got, left, 5);
      s.wait();
      g.wait();
      for (int64_t i = 0; i < 9; ++i)
        expect_near(got.item(i), left * 2 + i, dt, std::string("send_recv/") + dtype_name(dt) + "/ring");
    }
  }
  // Coalesced: several tensors, one Work.
  std::vector<Tensor> ts = {filled(3, DType::f32, [&](int64_t i) { return r + i; }),
                            filled(0, DType::f32, [&](int64_t) { return 0.0; }),
                            filled(5, DType::f32, [&](int64_t i) { return 2 * r + i; })};
  c.all_reduce_coalesced(ts, ReduceOp::sum).wait();
  const double rs = w * (w - 1) / 2.0;
  for (int64_t i = 0; i < 3; ++i) expect_near(ts[0].item(i), rs + w * i, DType::f32, "coalesced/0");
  for (int64_t i = 0; i < 5; ++i) expect_near(ts[2].item(i), 2 * rs + w * i, DType::f32, "coalesced/2");
  // split: even and odd ranks, ordered by descending key.
  auto sub = c.split(r % 2, -r);
  const int members = (w + 1 - r % 2) / 2;
  ++g_checks;
  if (!sub || sub->size() != members) {
    ++g_failures;
    std::printf("MISMATCH split size\n");
  } else {
    Tensor t = filled(1, DType::i64, [&](int64_t) { return r; });
    sub->all_reduce(t, ReduceOp::sum).wait();
    double want = 0;
    for (int q = r % 2; q < w; q += 2) want += q;
    expect_near(t.item(0), want, DType::i64, "split/all_reduce");
    Tensor who = filled(1, DType::i32, [&](int64_t) { return r; });
    sub->broadcast(who, 0).wait();  // new rank 0 = highest parent rank of the color (key = -rank)
    int highest = r % 2;
    for (int q = r % 2; q < w; q += 2) highest = q;
    expect_near(who.item(0), highest, DType::i32, "split/order");
  }
  auto none = c.split(r == 0 ? -1 : 1, 0);
  ++g_checks;
  if ((r == 0) != (none == nullptr)) {
    ++g_failures;
    std::printf("MISMATCH split with negative color\n");
  }
}

int collectives() {
  auto c = init_process_group();
  check_collectives(*c);
  check_p2p_and_misc(*c);
  std::printf("rank %d/%d: %d checks, %d failures, %llu collectives\n", c->rank(), c->size(), g_checks, g_failures,
              static_cast<unsigned long long>(c->sequence_number()));
  destroy_process_group();
  return g_failures == 0 ? 0 : 1;
}

// Rank `victim` SIGKILLs itself while a large all-reduce is in flight.
int kill_mid_collective(int victim) {
  auto c = init_process_group();
  Tensor t = Tensor::full({4 << 20}, 1.0, DType::f32);
  c->all_reduce(t).wait();  // everybody is connected and running
  try {
    Work w = c->all_reduce(t);
    if (c->rank() == victim) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      ::kill(::getpid(), SIGKILL);
    }
    w.wait();
    for (int i = 0; i < 20; ++i) c->all_reduce(t).wait();
  } catch (const Error& e) {
    std::printf("ERROR: %s\n", e.what());
    std::fflush(stdout);
    return 3;
  }
  return 4;
}

// Rank `late` sleeps past the timeout before joining a collective.
int stuck_rank(int late, int sleep_ms) {
  auto c = init_process_group();
  Tensor t = Tensor::full({16}, 1.0, DType::f32);
  try {
    c->all_reduce(t).wait();
    if (c->rank() == late) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
    c->all_reduce(t).wait();
  } catch (const Error& e) {
    std::printf("ERROR: %s\n", e.what());
    std::fflush(stdout);
    return 3;
  }
  return 4;
}

// Rank 1 calls a different collective than the others (count or op).
int desync(const std::string& what) {
  auto c = init_process_group();
  try {
    const bool odd = c->rank() == 1;
    Tensor t = Tensor::full({what == "count" && odd ? 11 : 10}, 1.0, DType::f32);
    c->all_reduce(t, what == "op" && odd ? ReduceOp::max : ReduceOp::sum).wait();
  } catch (const Error& e) {
    std::printf("ERROR: %s\n", e.what());
    std::fflush(stdout);
    return 3;
  }
  return 4;
}

// A job that keeps all-reducing until `stop_file` exists (at most 20 s).
int long_job(const std::string& stop_file) {
  auto c = init_process_group();
  Tensor t = Tensor::empty({64}, DType::f32);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  int rounds = 0;
  for (;;) {
    t.fill_(1.0);
    c->all_reduce(t).wait();
    if (t.item(0) != c->size()) return 1;
    ++rounds;
    Tensor stop = Tensor::full({1}, std::ifstream(stop_file).good() ? 1.0 : 0.0, DType::i32);
    c->all_reduce(stop, ReduceOp::max).wait();  // all ranks stop together
    if (stop.item(0) > 0 || std::chrono::steady_clock::now() > until) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::printf("rank %d: %d rounds ok\n", c->rank(), rounds);
  destroy_process_group();
  return 0;
}

// Connects to the store at MASTER_ADDR:MASTER_PORT as a client.
int store_client() {
  TcpStoreOptions o;
  o.host = std::getenv("MASTER_ADDR") ? std::getenv("MASTER_ADDR") : "127.0.0.1";
  o.port = std::atoi(std::getenv("MASTER_PORT") ? std::getenv("MASTER_PORT") : "0");
  o.timeout = std::chrono::seconds(5);
  const auto start = std::chrono::steady_clock::now();
  try {
    TcpStore s(o);
    s.set("intruder", "was here");
  } catch (const Error& e) {
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
    std::printf("refused after %lld ms\n", static_cast<long long>(ms));
    std::printf("ERROR: %s\n", e.what());
    std::fflush(stdout);
    return 3;
  }
  return 4;
}

// all_reduce + all_gather across hosts (netns test).
int two_hosts() {
  auto c = init_process_group();
  const int r = c->rank(), w = c->size();
  Tensor t = Tensor::full({1000}, r + 1.0, DType::f32);
  c->all_reduce(t).wait();
  Tensor g = Tensor::zeros({3 * w}, DType::i64);
  Tensor mine = Tensor::full({3}, r, DType::i64);
  c->all_gather(mine, g).wait();
  int bad = t.item(999) != w * (w + 1) / 2.0;
  for (int q = 0; q < w; ++q) bad += g.item(3 * q + 2) != q;
  std::printf("rank %d/%d: two-host checks %s\n", r, w, bad ? "FAILED" : "passed");
  destroy_process_group();
  return bad ? 1 : 0;
}

// CUDA tensors through NCCL, one device per rank (cuda:LOCAL_RANK).
int cuda_collectives() {
  auto c = init_process_group();
  const int r = c->rank(), w = c->size();
  const Device dev = Device::cuda(job_env_from_environment().local_rank);
  int64_t bad = 0;
  // The collectives and reductions this mode has always covered on NCCL.
  const std::pair<const char*, ReduceOp> cases[] = {{"all_reduce", ReduceOp::sum},
                                                    {"all_gather", ReduceOp::sum},
                                                    {"reduce_scatter", ReduceOp::max},
                                                    {"broadcast", ReduceOp::sum}};
  for (DType dt : {DType::f32, DType::bf16, DType::i64})
    for (const auto& [name, op] : cases) {
      const CollectiveSpec& spec = collective_spec(name);
      const ReduceOp reduce = op;
      const InputValue v = [reduce](int rank, int64_t i) { return value(rank, i, reduce); };
      const int root = spec.kind == Collective::broadcast ? w - 1 : 0;
      CollectiveBuffers b = make_buffers(spec, 1001, dt, dev, r, w, false, v);
      issue(spec, *c, b, op, root).wait();
      bad += count_wrong(spec, b, v, r, w, op, dt, root);
    }
  c->barrier().wait();
  std::printf("rank %d/%d: cuda checks %s\n", r, w, bad ? "FAILED" : "passed");
  destroy_process_group();
  return bad ? 1 : 0;
}

// Rendezvous through a FileStore directory instead of TCP.
int file_store(const std::string& dir) {
  InitOptions o;
  o.file_store_path = dir;
  auto c = init_process_group(o);
  Tensor t = Tensor::full({5}, c->rank() + 1.0, DType::f32);
  c->all_reduce(t).wait();
  const double want = c->size() * (c->size() + 1) / 2.0;
  std::printf("rank %d: file store all_reduce %s\n", c->rank(), t.item(4) == want ? "passed" : "FAILED");
  destroy_process_group();
  return t.item(4) == want ? 0 : 1;
}

// A training loop for the fault-injection suite (tests/faults): each step
// "computes" (sleeps step_ms) and all-reduces 16K floats. Prints "started"
// once every rank finished a step, so the harness can inject a fault from
// outside (kill, SIGSTOP, network partition). Faults from inside, on rank
// `victim`: "slow" sleeps 5x as long every step; "exit0" calls exit(0) at
// step `at` without destroy_process_group, as a script that returns early.
// DTRAIN_FAULT_DEVICE=cuda runs it on cuda:LOCAL_RANK (NCCL).
int train(int steps, int step_ms, int victim, const std::string& fault, int at) {
  auto c = init_process_group();
  const bool me = c->rank() == victim;
  const char* device = std::getenv("DTRAIN_FAULT_DEVICE");
  Tensor t = Tensor::full({16384}, 1.0, DType::f32);
  if (device != nullptr && std::string(device) == "cuda") t = t.to(Device::cuda(job_env_from_environment().local_rank));
  try {
    for (int step = 0; step < steps; ++step) {
      if (me && fault == "exit0" && step == at) {
        std::printf("rank %d: exiting with 0 at step %d\n", c->rank(), step);
        std::fflush(stdout);
        std::exit(0);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(me && fault == "slow" ? 5 * step_ms : step_ms));
      c->all_reduce(t).wait();
      if (step == 0) {
        std::printf("rank %d: started\n", c->rank());
        std::fflush(stdout);
      }
    }
  } catch (const Error& e) {
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count();
    std::printf("ERROR: %s\nerror raised at %lld ms since the epoch\n", e.what(), static_cast<long long>(ms));
    std::fflush(stdout);
    return 3;
  }
  std::printf("rank %d: done, %d steps; straggler warning: %s\n", c->rank(), steps,
              c->straggler_warning().empty() ? "none" : c->straggler_warning().c_str());
  destroy_process_group();
  return 0;
}

int print_env() {
  for (const char* k :
       {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "OMP_NUM_THREADS"})
    std::printf("%s=%s\n", k, std::getenv(k) ? std::getenv(k) : "(unset)");
  std::printf("TOKEN_LEN=%zu\n", std::getenv("DTRAIN_AUTH_TOKEN") ? std::strlen(std::getenv("DTRAIN_AUTH_TOKEN")) : 0);
  std::fprintf(stderr, "to stderr\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  try {
    if (mode == "collectives") return collectives();
    if (mode == "kill") return kill_mid_collective(argc > 2 ? std::atoi(argv[2]) : 1);
    if (mode == "stuck") return stuck_rank(argc > 2 ? std::atoi(argv[2]) : 1, argc > 3 ? std::atoi(argv[3]) : 3000);
    if (mode == "desync") return desync(argc > 2 ? argv[2] : "count");
    if (mode == "long-job") return long_job(argc > 2 ? argv[2] : "/nonexistent");
    if (mode == "store-client") return store_client();
    if (mode == "two-hosts") return two_hosts();
    if (mode == "cuda") return cuda_collectives();
    if (mode == "file-store") return file_store(argc > 2 ? argv[2] : "");
    if (mode == "print-env") return print_env();
    if (mode == "train")
      return train(argc > 2 ? std::atoi(argv[2]) : 100, argc > 3 ? std::atoi(argv[3]) : 10,
                   argc > 4 ? std::atoi(argv[4]) : -1, argc > 5 ? argv[5] : "none", argc > 6 ? std::atoi(argv[6]) : 0);
    if (mode == "exit") return argc > 2 ? std::atoi(argv[2]) : 0;
    if (mode == "sleep") {
      std::printf("sleeping\n");
      std::fflush(stdout);
      std::this_thread::sleep_for(std::chrono::seconds(argc > 2 ? std::atoi(argv[2]) : 30));
      return 0;
    }
  } catch (const std::exception& e) {
    std::printf("ERROR: %s\n", e.what());
    return 2;
  }
  std::fprintf(stderr, "comm_worker: unknown mode '%s'\n", mode.c_str());
  return 2;
}
