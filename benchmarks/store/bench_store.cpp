// dtrain-bench-store: what sealing the TCP store's frames costs.
//
// One process hosts a store and connects one client to it over loopback, as
// rank 0 and a rank do. For set, get (values of 64 B and 64 KiB) and add it
// times `--iters` back-to-back operations, first over a session with
// plaintext framing (store_session.h: same frames, no cipher; only a
// benchmark can turn it on), then over a normal sealed session, and repeats
// that pair `--rounds` times, alternating, so both see the same machine
// state. Reported per operation: the median over rounds of the mean latency
// (us), operations per second and, for values, MB/s of value bytes; and the
// ratio sealed / plaintext latency (1.10 = 10% overhead).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "comm/store_session.h"
#include "dtrain/comm/store.h"

using namespace dtrain;
using Clock = std::chrono::steady_clock;

namespace {

const std::string kToken = "6c1f0e9d8b7a65443322110ffeeddccbbaa99887";

struct Pair {
  std::unique_ptr<comm::TcpStore> server, client;
};

Pair connect(bool sealed) {
  comm::session::allow_plaintext_for_benchmark(!sealed);
  comm::TcpStoreOptions s;
  s.is_server = true;
  s.auth_token = kToken;
  s.rank = 0;
  Pair p;
  p.server = std::make_unique<comm::TcpStore>(s);
  comm::TcpStoreOptions c;
  c.port = p.server->port();
  c.auth_token = kToken;
  c.rank = 1;
  p.client = std::make_unique<comm::TcpStore>(c);
  comm::session::allow_plaintext_for_benchmark(false);
  return p;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int run(int argc, char** argv) {
  CLI::App app{"dtrain-bench-store: TCP store latency, sealed vs plaintext framing"};
  int iters = 400, rounds = 5;
  app.add_option("--iters", iters, "operations per measurement")->check(CLI::Range(1, 1000000));
  app.add_option("--rounds", rounds, "alternating plaintext/sealed rounds (median reported)")
      ->check(CLI::Range(1, 1000));
  CLI11_PARSE(app, argc, argv);

  struct Op {
    std::string name;
    size_t bytes;
    std::function<void(comm::Store&, const std::string&)> run;
  };
  const std::string small(64, 's'), large(64 << 10, 'L');
  const std::vector<Op> ops = {
      {"set 64 B", 64, [&](comm::Store& s, const std::string&) { s.set("k", small); }},
      {"get 64 B", 64, [&](comm::Store& s, const std::string&) { (void)s.try_get("small"); }},
      {"set 64 KiB", 64 << 10, [&](comm::Store& s, const std::string&) { s.set("k", large); }},
      {"get 64 KiB", 64 << 10, [&](comm::Store& s, const std::string&) { (void)s.try_get("large"); }},
      {"add", 0, [&](comm::Store& s, const std::string&) { (void)s.add("n", 1); }},
  };
  std::map<std::string, std::vector<double>> us[2];  // [sealed][op] -> mean latency per round
  for (int round = 0; round < rounds; ++round) {
    for (int sealed = 0; sealed < 2; ++sealed) {
      Pair p = connect(sealed == 1);
      p.server->set("small", small);
      p.server->set("large", large);
      for (const auto& op : ops) {
        for (int i = 0; i < iters / 10 + 1; ++i) op.run(*p.client, op.name);  // warm-up
        const auto t0 = Clock::now();
        for (int i = 0; i < iters; ++i) op.run(*p.client, op.name);
        us[sealed][op.name].push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / iters);
      }
    }
  }
  std::printf("# %d rounds x %d ops, one client and the store on loopback, cipher %s\n", rounds, iters,
              comm::session::cipher_name(comm::session::choose_cipher(comm::session::supported_ciphers())));
  std::printf("%-11s %14s %14s %14s %14s %9s\n", "op", "plain us/op", "sealed us/op", "sealed op/s", "sealed MB/s",
              "ratio");
  for (const auto& op : ops) {
    const double plain = median(us[0][op.name]), sealed = median(us[1][op.name]);
    std::printf("%-11s %14.2f %14.2f %14.0f %14.1f %9.3f\n", op.name.c_str(), plain, sealed, 1e6 / sealed,
                op.bytes ? op.bytes / sealed : 0.0, sealed / plain);
  }
  return 0;
}

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dtrain-bench-store: %s\n", e.what());
    return 1;
  }
}
