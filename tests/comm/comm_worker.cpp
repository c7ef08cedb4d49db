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

#include "dtrain/comm.h"

using namespace dtrain;
using namespace dtrain::comm;

namespace {

int g_failures = 0;
int g_checks = 0;

const DType kDTypes[] = {DType::f32, DType::bf16, DType::f16, DType::i32, DType::i64};
const ReduceOp kOps[] = {ReduceOp::sum, ReduceOp::avg, ReduceOp::max, ReduceOp::min, ReduceOp::product};

// Small integers: exact in every dtype, so expected values are exact too.
double value(int rank, int64_t i, ReduceOp op) {
  if (op == ReduceOp::product) return static_cast<double>(((rank + i) % 2) + 1);
  return static_cast<double>(rank + 1 + (i % 3));
}

double expected_reduce(int world, int64_t i, ReduceOp op, DType dtype) {
  double acc = value(0, i, op);
  for (int r = 1; r < world; ++r) {
    const double v = value(r, i, op);
    switch (op) {
      case ReduceOp::sum:
      case ReduceOp::avg:
        acc += v;
        break;
      case ReduceOp::max:
        acc = std::max(acc, v);
        break;
      case ReduceOp::min:
        acc = std::min(acc, v);
        break;
      case ReduceOp::product:
        acc *= v;
        break;
    }
  }
  if (op == ReduceOp::avg) acc = (dtype == DType::i32 || dtype == DType::i64) ? std::trunc(acc / world) : acc / world;
  return acc;
}

double tolerance(DType dtype) {
  return dtype == DType::f32 ? 1e-5 : (dtype == DType::bf16 || dtype == DType::f16) ? 1e-2 : 0.0;
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

std::string tag(const char* op, DType dtype, int64_t n, const char* mode, const char* extra = "") {
  return std::string(op) + "/" + dtype_name(dtype) + "/n=" + std::to_string(n) + "/" + mode + extra;
}

void check_all_reduce(Communicator& c) {
  const int r = c.rank(), w = c.size();
  for (DType dt : kDTypes)
    for (ReduceOp op : kOps)
      for (int64_t n : {0, 1, 7, 100}) {
        // In place and out of place are issued together, then waited: async.
        Tensor a = filled(n, dt, [&](int64_t i) { return value(r, i, op); });
        Tensor in = filled(n, dt, [&](int64_t i) { return value(r, i, op); });
        Tensor out = Tensor::zeros({n}, dt);
        Work w1 = c.all_reduce(a, op);
        Work w2 = c.all_reduce(in, out, op);
        w2.wait();
        w1.wait();
        for (int64_t i = 0; i < n; ++i) {
          const double want = expected_reduce(w, i, op, dt);
          expect_near(a.item(i), want, dt, tag("all_reduce", dt, n, "inplace", reduce_op_name(op)));
          expect_near(out.item(i), want, dt, tag("all_reduce", dt, n, "outofplace", reduce_op_name(op)));
          expect_near(in.item(i), value(r, i, op), dt, tag("all_reduce", dt, n, "input-untouched"));
        }
      }
}

void check_reduce_scatter(Communicator& c) {
  const int r = c.rank(), w = c.size();
  for (DType dt : kDTypes)
    for (ReduceOp op : kOps)
      for (int64_t n : {0, 1, 5}) {
        // Element j of the full array holds value(rank, j): rank r's chunk covers j in [r*n, (r+1)*n).
        Tensor in = filled(n * w, dt, [&](int64_t j) { return value(r, j, op); });
        Tensor out = Tensor::zeros({n}, dt);
        c.reduce_scatter(in, out, op).wait();
        Tensor inplace = filled(n * w, dt, [&](int64_t j) { return value(r, j, op); });
        Tensor chunk = inplace.narrow(r * n, n);
        c.reduce_scatter(inplace, chunk, op).wait();
        for (int64_t i = 0; i < n; ++i) {
          const double want = expected_reduce(w, r * n + i, op, dt);
          expect_near(out.item(i), want, dt, tag("reduce_scatter", dt, n, "outofplace", reduce_op_name(op)));
          expect_near(chunk.item(i), want, dt, tag("reduce_scatter", dt, n, "inplace", reduce_op_name(op)));
        }
      }
}

void check_all_gather(Communicator& c) {
  const int r = c.rank(), w = c.size();
  for (DType dt : kDTypes)
    for (int64_t n : {0, 1, 5}) {
      Tensor in = filled(n, dt, [&](int64_t i) { return 10 * r + i; });
      Tensor out = Tensor::zeros({n * w}, dt);
      Work a = c.all_gather(in, out);
      Tensor inplace = Tensor::zeros({n * w}, dt);
      inplace.narrow(r * n, n).copy_(in);
      Work b = c.all_gather(inplace.narrow(r * n, n), inplace);
      a.wait();
      b.wait();
      for (int src = 0; src < w; ++src)
        for (int64_t i = 0; i < n; ++i) {
          expect_near(out.item(src * n + i), 10 * src + i, dt, tag("all_gather", dt, n, "outofplace"));
          expect_near(inplace.item(src * n + i), 10 * src + i, dt, tag("all_gather", dt, n, "inplace"));
        }
    }
}

void check_broadcast(Communicator& c) {
  const int r = c.rank(), w = c.size();
  for (DType dt : kDTypes)
    for (int64_t n : {0, 1, 7})
      for (int root = 0; root < w; ++root) {
        Tensor t = filled(n, dt, [&](int64_t i) { return 3 * r + i; });
        c.broadcast(t, root).wait();
        for (int64_t i = 0; i < n; ++i) expect_near(t.item(i), 3 * root + i, dt, tag("broadcast", dt, n, "root"));
      }
}

void check_all_to_all(Communicator& c) {
  const int r = c.rank(), w = c.size();
  for (DType dt : kDTypes)
    for (int64_t n : {0, 1, 3}) {
      // Chunk j of rank r's input holds 100*r + 10*j + i; rank r receives chunk r of everybody.
      Tensor in = filled(n * w, dt, [&](int64_t k) {
        return 100 * r + 10 * (k / std::max<int64_t>(n, 1)) + k % std::max<int64_t>(n, 1);
      });
      Tensor out = Tensor::zeros({n * w}, dt);
      c.all_to_all(in, out).wait();
      Tensor same = in.clone();
      c.all_to_all(same, same).wait();
      for (int src = 0; src < w; ++src)
        for (int64_t i = 0; i < n; ++i) {
          const double want = 100 * src + 10 * r + i;
          expect_near(out.item(src * n + i), want, dt, tag("all_to_all", dt, n, "outofplace"));
          expect_near(same.item(src * n + i), want, dt, tag("all_to_all", dt, n, "inplace"));
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
      for (int64_t i = 0; i < 9; ++i) expect_near(got.item(i), left * 2 + i, dt, tag("send_recv", dt, 9, "ring"));
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
  check_all_reduce(*c);
  check_reduce_scatter(*c);
  check_all_gather(*c);
  check_broadcast(*c);
  check_all_to_all(*c);
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
  int bad = 0;
  for (DType dt : {DType::f32, DType::bf16, DType::i64}) {
    Tensor host = filled(1001, dt, [&](int64_t i) { return value(r, i, ReduceOp::sum); });
    Tensor t = host.to(dev);
    c->all_reduce(t).wait();
    Tensor back = t.to(Device::cpu());
    for (int64_t i = 0; i < 1001; ++i) bad += back.item(i) != expected_reduce(w, i, ReduceOp::sum, dt);
    Tensor mine = filled(3, dt, [&](int64_t i) { return 10 * r + i; }).to(dev);
    Tensor all = Tensor::zeros({3 * w}, dt, dev);
    c->all_gather(mine, all).wait();
    Tensor all_h = all.to(Device::cpu());
    for (int q = 0; q < w; ++q)
      for (int64_t i = 0; i < 3; ++i) bad += all_h.item(3 * q + i) != 10 * q + i;
    Tensor rs_in = filled(2 * w, dt, [&](int64_t j) { return value(r, j, ReduceOp::max); }).to(dev);
    Tensor rs_out = Tensor::zeros({2}, dt, dev);
    c->reduce_scatter(rs_in, rs_out, ReduceOp::max).wait();
    Tensor rs_h = rs_out.to(Device::cpu());
    for (int64_t i = 0; i < 2; ++i) bad += rs_h.item(i) != expected_reduce(w, 2 * r + i, ReduceOp::max, dt);
    Tensor b = filled(5, dt, [&](int64_t i) { return r + i; }).to(dev);
    c->broadcast(b, w - 1).wait();
    Tensor b_h = b.to(Device::cpu());
    for (int64_t i = 0; i < 5; ++i) bad += b_h.item(i) != (w - 1) + i;
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
