// Two "hosts" on one machine: two network namespaces joined by a veth pair,
// two ranks in each, launched by dtrain-run per namespace. Needs root and
// iproute2; skipped (exit 77) with the reason otherwise. The namespaces are
// removed whatever happens.
#include <unistd.h>

#include <catch2/catch.hpp>

#include "process_util.h"
#include "test_support.h"

using namespace dtrain::testing;
using namespace std::chrono_literals;

namespace {

std::string find_ip() {
  for (const char* p : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"})
    if (::access(p, X_OK) == 0) return p;
  return "";
}

ProcessResult run(const std::vector<std::string>& argv, std::chrono::milliseconds limit = 10s) {
  Process p(argv, {});
  return p.wait(limit);
}

struct Namespaces {
  std::string ip, a, b;
  ~Namespaces() {
    run({ip, "netns", "del", a});
    run({ip, "netns", "del", b});
  }
};

}  // namespace

TEST_CASE("all_reduce and all_gather across two network namespaces (2 ranks each)", "[comm][netns]") {
  const std::string ip = find_ip();
  if (::getuid() != 0) skip_test("the two-host test needs root to create network namespaces");
  if (ip.empty()) skip_test("the two-host test needs iproute2's 'ip' command");
  const int id = static_cast<int>(::getpid() % 200) + 20;
  const std::string sid = std::to_string(::getpid());
  Namespaces ns{ip, "dtA" + sid, "dtB" + sid};
  const std::string va = "va" + sid, vb = "vb" + sid;
  const std::string subnet = "10.231." + std::to_string(id) + ".";
  auto setup = run({ip, "netns", "add", ns.a});
  if (setup.exit_code != 0) skip_test("cannot create a network namespace here: " + setup.output);
  const std::vector<std::vector<std::string>> steps = {{ip, "netns", "add", ns.b},
                                                       {ip, "link", "add", va, "type", "veth", "peer", "name", vb},
                                                       {ip, "link", "set", va, "netns", ns.a},
                                                       {ip, "link", "set", vb, "netns", ns.b},
                                                       {ip, "-n", ns.a, "addr", "add", subnet + "1/24", "dev", va},
                                                       {ip, "-n", ns.b, "addr", "add", subnet + "2/24", "dev", vb},
                                                       {ip, "-n", ns.a, "link", "set", va, "up"},
                                                       {ip, "-n", ns.b, "link", "set", vb, "up"},
                                                       {ip, "-n", ns.a, "link", "set", "lo", "up"},
                                                       {ip, "-n", ns.b, "link", "set", "lo", "up"}};
  for (const auto& s : steps) {
    auto r = run(s);
    INFO(s[1] << " " << s[2] << ": " << r.output);
    REQUIRE(r.exit_code == 0);
  }
  auto node = [&](const std::string& name, int node_rank) {
    return std::make_unique<Process>(
        std::vector<std::string>{ip, "netns", "exec", name, DTRAIN_RUN, "--nproc-per-node", "2", "--nnodes", "2",
                                 "--node-rank", std::to_string(node_rank), "--master-addr", subnet + "1",
                                 "--master-port", "29411", DTRAIN_COMM_WORKER, "two-hosts"},
        Env{{"DTRAIN_AUTH_TOKEN", kTestToken}, {"DTRAIN_TIMEOUT_S", "20"}, {"OMP_NUM_THREADS", "1"}});
  };
  auto n0 = node(ns.a, 0);
  auto n1 = node(ns.b, 1);
  auto r0 = n0->wait(40s);
  auto r1 = n1->wait(40s);
  INFO("node 0:\n" << r0.output << "\nnode 1:\n" << r1.output);
  CHECK(r0.exit_code == 0);
  CHECK(r1.exit_code == 0);
  for (int rank = 0; rank < 4; ++rank) {
    const auto& out = rank < 2 ? r0.output : r1.output;
    CHECK(out.find("rank " + std::to_string(rank) + "/4: two-host checks passed") != std::string::npos);
  }
}
