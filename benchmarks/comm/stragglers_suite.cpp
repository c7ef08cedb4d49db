// The stragglers suite: finds the one bad part of a job. Every rank times
// the same GEMM on its own device at the same moment, and every pair of ranks
// on the ring (all pairs up to 8 ranks) times an exchange of one buffer; each
// figure is compared with the median across the job, and a rank or link
// below `--straggler-threshold` x median is named (rank, host, figure).
//
// DTRAIN_BENCH_SLOW_RANK=R[:FACTOR] (a test hook, bench_suite.h) makes rank R
// really slower: it sleeps (FACTOR - 1) x each measured call after the call,
// inside the timed interval, as a throttled GPU or a busy host would.
#include <algorithm>
#include <thread>
#include <vector>

#include "bench_suite.h"
#include "dtrain/ops.h"

namespace dtrain::bench {
namespace {

// Calls `call` and stretches it to `factor` times its duration.
void slowed(const std::function<void()>& call, double factor) {
  const auto t0 = Clock::now();
  call();
  if (factor > 1.0) std::this_thread::sleep_for(std::chrono::duration<double>((factor - 1.0) * seconds_since(t0)));
}

class StragglersSuite final : public BenchSuite {
 public:
  const char* name() const override { return "stragglers"; }
  const char* description() const override { return "per-rank GEMM and per-pair bandwidth vs the job median"; }

  void add_options(CLI::App& app) override {
    app.add_option("--straggler-threshold", threshold_, "a rank or link below this fraction of the job median is named")
        ->check(CLI::Range(0.05, 1.0));
  }

  void run(BenchContext& ctx) override {
    const double factor = slow_rank_factor(ctx.comm.rank());
    const std::vector<double> gemm = per_rank_gemm(ctx, factor);
    std::vector<std::pair<int, int>> pairs;
    const int world = ctx.comm.size();
    for (int a = 0; a < world; ++a)
      for (int b = a + 1; b < world; ++b)
        if (world <= 8 || b == a + 1 || (a == 0 && b == world - 1)) pairs.emplace_back(a, b);
    const std::vector<double> links = per_pair_gbps(ctx, pairs, factor);
    if (!ctx.lead()) return;
    auto& section = ctx.report.section("stragglers");
    section = {{"threshold", threshold_},
               {"gemm_gflops_per_rank", gemm},
               {"hosts", ctx.hosts},
               {"pairs", nlohmann::json::array()},
               {"slow_ranks", nlohmann::json::array()},
               {"slow_links", nlohmann::json::array()}};
    const double gemm_median = median_of(gemm);
    std::string named;
    for (int r = 0; r < world; ++r) {
      if (gemm[static_cast<size_t>(r)] >= threshold_ * gemm_median) continue;
      section["slow_ranks"].push_back(
          {{"rank", r}, {"host", ctx.hosts[static_cast<size_t>(r)]}, {"gemm_gflops", gemm[static_cast<size_t>(r)]}});
      named += (named.empty() ? "" : "; ") + std::string("rank ") + std::to_string(r) + " on " +
               ctx.hosts[static_cast<size_t>(r)] + ": " + std::to_string(gemm[static_cast<size_t>(r)]) + " GFLOP/s";
    }
    const double slowest = *std::min_element(gemm.begin(), gemm.end());
    ctx.report.add_check({"stragglers", "slowest rank's GEMM vs job median", slowest, "GFLOP/s", gemm_median,
                          "median of ranks", threshold_, 0.0, false,
                          named.empty() ? "no rank below the threshold" : "below the threshold: " + named});
    if (pairs.empty()) return;
    const double link_median = median_of(links);
    std::string slow_links;
    for (size_t i = 0; i < pairs.size(); ++i) {
      const auto [a, b] = pairs[i];
      section["pairs"].push_back({{"ranks", {a, b}}, {"gbps", links[i]}});
      if (links[i] >= threshold_ * link_median) continue;
      section["slow_links"].push_back({{"ranks", {a, b}}, {"gbps", links[i]}});
      slow_links += (slow_links.empty() ? "" : "; ") + std::string("ranks ") + std::to_string(a) + "<->" +
                    std::to_string(b) + ": " + std::to_string(links[i]) + " GB/s";
    }
    ctx.report.add_check({"stragglers", "slowest link vs job median", *std::min_element(links.begin(), links.end()),
                          "GB/s", link_median, "median of pairs", threshold_, 0.0, false,
                          slow_links.empty() ? (pairs.size() < 3 ? "fewer than 3 links: the median is no reference"
                                                                 : "no link below the threshold")
                                             : "below the threshold: " + slow_links});
    for (const auto& s : section["slow_ranks"])
      std::printf("# straggler: rank %d on %s, GEMM %.1f GFLOP/s against a job median of %.1f\n", s["rank"].get<int>(),
                  s["host"].get<std::string>().c_str(), s["gemm_gflops"].get<double>(), gemm_median);
  }

 private:
  // Every rank's GEMM GFLOP/s, measured at the same moment, gathered on every rank.
  static std::vector<double> per_rank_gemm(BenchContext& ctx, double factor) {
    const bool gpu = ctx.device.is_cuda();
    const int64_t n = gpu ? 4096 : 384;
    const DType dtype = gpu ? DType::bf16 : DType::f32;
    Tensor a = Tensor::full({n, n}, 0.5, dtype, ctx.device), b = Tensor::full({n, n}, 0.25, dtype, ctx.device);
    Tensor out = Tensor::empty({n, n}, dtype, ctx.device);
    auto gemm = [&] {
      ops::matmul(out, a, b);
      (void)out.narrow(0, 1).to(Device::cpu());
    };
    gemm();
    ctx.progress.say("stragglers", "per-rank GEMM " + std::to_string(n) + "^3");
    ctx.comm.barrier().wait();
    const TimedCalls t = time_calls([&] { slowed(gemm, factor); }, ctx.common.quick ? 5 : 20, ctx.common.row_limit());
    return gather_from_ranks(ctx.comm, 2.0 * static_cast<double>(n * n) * static_cast<double>(n) / t.median() / 1e9);
  }

  // GB/s of each pair exchanging one buffer both ways (bytes sent by one side / time).
  static std::vector<double> per_pair_gbps(BenchContext& ctx, const std::vector<std::pair<int, int>>& pairs,
                                           double factor) {
    const int rank = ctx.comm.rank();
    const int64_t n = ctx.device.is_cuda() ? (16 << 20) : (256 << 10);
    Tensor send = Tensor::full({n}, 1.0, DType::f32, ctx.device), recv = Tensor::zeros({n}, DType::f32, ctx.device);
    Tensor result = Tensor::full({static_cast<int64_t>(pairs.size())}, 1e30, DType::f32);
    const int reps = ctx.common.quick ? 3 : 10;
    for (size_t i = 0; i < pairs.size(); ++i) {
      const auto [a, b] = pairs[i];
      ctx.comm.barrier().wait();  // one pair at a time: the figure is the link's alone
      if (rank != a && rank != b) continue;
      if (rank == a) ctx.progress.say("stragglers", "link " + std::to_string(a) + "<->" + std::to_string(b));
      const int peer = rank == a ? b : a;
      std::vector<double> s;
      for (int r = 0; r < reps; ++r) {
        const auto t0 = Clock::now();
        slowed(
            [&] {
              comm::Work w1 = ctx.comm.send(send, peer, 7);
              comm::Work w2 = ctx.comm.recv(recv, peer, 7);
              w1.wait();
              w2.wait();
              (void)recv.narrow(0, 1).to(Device::cpu());
            },
            factor);
        s.push_back(seconds_since(t0));
      }
      result.set_item(static_cast<int64_t>(i), static_cast<double>(n) * 4 / median_of(s) / 1e9);
    }
    // Ranks outside a pair hold 1e30; of the two ends, the slower view counts.
    ctx.comm.all_reduce(result, comm::ReduceOp::min).wait();
    std::vector<double> out(pairs.size());
    for (size_t i = 0; i < pairs.size(); ++i) out[i] = result.item(static_cast<int64_t>(i));
    return out;
  }

  double threshold_ = 0.8;
};

DTRAIN_REGISTER_BENCH_SUITE(StragglersSuite);

}  // namespace
}  // namespace dtrain::bench
