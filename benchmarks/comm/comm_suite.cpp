// The comm suite: collectives in the shape of nccl-tests, described by the
// shared table in src/comm/collective_specs.h (counts, busbw factors, how to
// issue each, expected values).
//
// For each operation and size: one checked run (#wrong = elements that
// differ from the expected values, summed over ranks), then warm-up, then
// rounds x iters timed calls out of place and in place (interleaved with the
// raw Gloo baseline). time is the median per-call latency, the max over
// ranks (the slowest rank sets the pace). algbw = bytes / time; busbw =
// algbw * the spec's factor. For all_gather and reduce_scatter, bytes is the
// whole (gathered / scattered) array.
//
// Time bounds: the checked call's time (max over ranks) predicts the row; a
// row that would run past --row-seconds gets fewer calls (at least one) and is
// reported as cut short; once the suite has run past --suite-seconds the
// remaining rows are skipped and reported. The decision uses figures every
// rank agrees on (all-reduced), so no rank waits for a call another skipped.
//
// On CPU the same run also measures, as baselines: the same operations called
// on raw Gloo (no dtrain layer, no worker thread), so the per-call overhead of
// dtrain is printed as a ratio, and dtrain's own per-call cost. On a GPU the
// baseline is raw NCCL (raw_nccl.h), interleaved the same way: its per-call
// latency beside dtrain's out-of-place row (the ratio), and nccl-tests' own
// figure, calls back to back timed by CUDA events, with its busbw.
#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/alltoall.h>
#include <gloo/broadcast.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/transport/tcp/device.h>

#include <algorithm>
#include <sstream>

#include "bench_suite.h"
#include "comm/collective_specs.h"
#include "comm/gloo/gloo_store_adapter.h"
#include "datasheet_peaks.h"
#include "dtrain/comm.h"
#ifdef DTRAIN_WITH_CUDA
#include "raw_nccl.h"
#endif

namespace dtrain::bench {
namespace {

using namespace dtrain::comm;

struct Options {
  std::string min_bytes = "8", max_bytes = "256M";
  double step_factor = 2;
  int iters = 20, warmup = 5, rounds = 5;
  std::string ops = "all_reduce,all_gather,reduce_scatter,broadcast,all_to_all";
  std::string dtype = "f32";
  bool no_raw = false;
  bool no_raw_nccl = false;
};

size_t parse_size(const std::string& s) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    DTRAIN_THROW("cannot parse size '", s, "' (use e.g. 8, 64K, 256M)");
  }
  const std::string unit = s.substr(used);
  if (unit == "K" || unit == "KiB")
    v *= 1024;
  else if (unit == "M" || unit == "MiB")
    v *= 1024 * 1024;
  else if (unit == "G" || unit == "GiB")
    v *= 1024.0 * 1024 * 1024;
  else
    DTRAIN_CHECK(unit.empty() || unit == "B", "cannot parse size '", s, "' (use e.g. 8, 64K, 256M)");
  return static_cast<size_t>(v);
}

// Rank r's input element i: small integers, exact in every dtype after sums.
double input_value(int rank, int64_t i) {
  return static_cast<double>((rank + i) % 5 + 1);
}

// One collective at one size: out-of-place and in-place buffers from the spec table.
class Case {
 public:
  Case(Communicator& c, const CollectiveSpec& spec, size_t bytes, DType dtype, Device device)
      : c_(c), spec_(spec), es_(dtype_size(dtype)), dtype_(dtype) {
    const int64_t count = static_cast<int64_t>(bytes / es_);
    out_of_place_ = make_buffers(spec, count, dtype, device, c.rank(), c.size(), false, input_value);
    in_place_ = make_buffers(spec, count, dtype, device, c.rank(), c.size(), true, input_value);
  }

  size_t bytes() const { return static_cast<size_t>(count()) * es_; }
  int64_t count() const { return out_of_place_.count; }
  const CollectiveBuffers& out_of_place() const { return out_of_place_; }

  // Runs once out of place on fresh inputs; returns the wrong elements and the call's seconds.
  std::pair<int64_t, double> check() {
    reset_input(out_of_place_);
    const auto t0 = Clock::now();
    issue(spec_, c_, out_of_place_).wait();
    const double s = seconds_since(t0);
    return {count_wrong(spec_, out_of_place_, input_value, c_.rank(), c_.size(), ReduceOp::sum, dtype_), s};
  }

  // Seconds for one call, issued and waited for.
  double once_dtrain(bool in_place) {
    const auto t0 = Clock::now();
    issue(spec_, c_, in_place ? in_place_ : out_of_place_).wait();
    return seconds_since(t0);
  }

  // The same operation on raw Gloo (in place where Gloo allows), on this thread.
  double once_raw(const std::shared_ptr<gloo::Context>& ctx) {
    const auto t0 = Clock::now();
    auto* in = static_cast<float*>(out_of_place_.input.data_ptr());
    auto* out = static_cast<float*>(out_of_place_.output.data_ptr());
    const auto in_n = static_cast<size_t>(out_of_place_.input.numel());
    const auto out_n = static_cast<size_t>(out_of_place_.output.numel());
    switch (spec_.kind) {
      case Collective::all_reduce: {
        gloo::AllreduceOptions o(ctx);
        o.setOutput(in, in_n);
        o.setReduceFunction(static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<float>));
        gloo::allreduce(o);
        break;
      }
      case Collective::broadcast: {
        gloo::BroadcastOptions o(ctx);
        o.setOutput(in, in_n);
        o.setRoot(0);
        gloo::broadcast(o);
        break;
      }
      case Collective::all_gather: {
        gloo::AllgatherOptions o(ctx);
        o.setInput(in, in_n);
        o.setOutput(out, out_n);
        gloo::allgather(o);
        break;
      }
      case Collective::all_to_all: {
        gloo::AlltoallOptions o(ctx);
        o.setInput(in, in_n);
        o.setOutput(out, out_n);
        gloo::alltoall(o);
        break;
      }
      case Collective::reduce_scatter:
        DTRAIN_THROW("raw Gloo has no plain reduce-scatter to compare with");
    }
    return seconds_since(t0);
  }

 private:
  Communicator& c_;
  const CollectiveSpec& spec_;
  size_t es_;
  DType dtype_;
  CollectiveBuffers out_of_place_, in_place_;
};

// dtrain's per-call latency next to raw NCCL's at one size (the issue's
// goal: within 10% at 8 B and 8 MiB).
struct LatencyPoint {
  std::string op;
  size_t bytes = 0;
  double dtrain_us = 0, raw_nccl_us = 0;
};

// The sizes whose latency is compared with raw NCCL in the summary.
bool latency_size(size_t requested_bytes) {
  return requested_bytes == 8 || requested_bytes == (size_t{8} << 20);
}

// The largest row of one collective, for its check.
struct OpSummary {
  size_t bytes = 0;
  double algbw = 0, busbw = 0, raw_busbw = 0;
  int64_t wrong = 0;
  int rows = 0, cut = 0, skipped = 0;
};

class CommSuite final : public BenchSuite {
 public:
  const char* name() const override { return "comm"; }
  const char* description() const override { return "collective bandwidth (nccl-tests columns)"; }

  void add_options(CLI::App& app) override {
    auto* g = app.add_option_group("comm", "options of --suite comm");
    g->add_option("--min-bytes", o_.min_bytes, "smallest size (e.g. 8, 1K, 1M)");
    g->add_option("--max-bytes", o_.max_bytes, "largest size");
    g->add_option("--step-factor", o_.step_factor, "size multiplier between rows")->check(CLI::Range(1.01, 1024.0));
    g->add_option("--iters", o_.iters, "timed iterations")->check(CLI::Range(1, 100000));
    g->add_option("--warmup", o_.warmup, "warm-up iterations")->check(CLI::Range(0, 100000));
    g->add_option("--rounds", o_.rounds, "timed rounds of --iters calls; the median call is reported")
        ->check(CLI::Range(1, 1000));
    g->add_option("--ops", o_.ops, "comma-separated operations: " + collective_names());
    g->add_option("--dtype", o_.dtype, "f32, bf16, f16, i32, i64");
    g->add_flag("--no-raw-gloo", o_.no_raw, "skip the raw Gloo baseline");
    g->add_flag("--no-raw-nccl", o_.no_raw_nccl, "skip the raw NCCL baseline (GPU)");
  }

  void run(BenchContext& ctx) override {
    Options o = o_;
    if (ctx.common.quick) {
      if (o.max_bytes == "256M") o.max_bytes = "4M";
      if (o.step_factor == 2) o.step_factor = 4;
      o.iters = std::min(o.iters, 5);
      o.warmup = std::min(o.warmup, 2);
      o.rounds = std::min(o.rounds, 3);
    }
    std::vector<const CollectiveSpec*> specs;
    std::stringstream ops(o.ops);
    for (std::string op; std::getline(ops, op, ',');) specs.push_back(&collective_spec(op));
    Communicator& comm = ctx.comm;
    const int rank = comm.rank(), world = comm.size();
    const DType dtype = dtype_from_name(o.dtype);
    const Device device = ctx.device;
    const bool cpu = device.is_cpu();
    const bool raw = cpu && !o.no_raw && dtype == DType::f32 && world > 1;  // one rank: nothing to compare
    const bool lead = ctx.lead();
    const auto suite_start = Clock::now();
    const double row_limit = ctx.common.row_limit(), suite_limit = ctx.common.suite_limit();

    std::shared_ptr<gloo::Context> raw_ctx;
    if (raw) {
      // Raw Gloo's own full mesh, rendezvousing through the job's store.
      const JobEnv env = job_env_from_environment();
      gloo::transport::tcp::attr attr;
      attr.hostname = std::getenv("DTRAIN_GLOO_ADDR") ? std::getenv("DTRAIN_GLOO_ADDR") : env.master_addr;
      auto dev = gloo::transport::tcp::CreateDevice(attr);
      auto gctx = std::make_shared<gloo::rendezvous::Context>(rank, world);
      gctx->setTimeout(comm.timeout());
      GlooStoreAdapter adapter(std::make_shared<PrefixStore>("bench/raw_gloo", comm.store()));
      gctx->connectFullMesh(adapter, dev);
      raw_ctx = gctx;
    }
    const double layer_us = cpu ? layer_cost_us(comm) : 0.0;
#ifdef DTRAIN_WITH_CUDA
    // Raw NCCL's own communicator, its unique id exchanged through the job's store.
    std::unique_ptr<RawNccl> nccl;
    if (device.is_cuda() && !o.no_raw_nccl) nccl = std::make_unique<RawNccl>(comm, device.index(), "bench/raw_nccl");
    const bool raw_nccl = nccl != nullptr;
#else
    const bool raw_nccl = false;
#endif
    // Raw Gloo's errors name no rank ("Connection closed by peer"): when the
    // baseline fails, a dtrain barrier fails too, with dtrain's account of
    // which rank died or stopped answering; report that, raw text after it.
    std::string op_name_for_errors;
    auto raw_once = [&](Case& cs) {
      try {
        return cs.once_raw(raw_ctx);
      } catch (const std::exception& e) {
        const std::string raw_text = e.what();
        try {
          comm.barrier().wait();
        } catch (const std::exception& d) {
          DTRAIN_THROW("the raw Gloo baseline (", op_name_for_errors, ") failed; dtrain's view: ", d.what(),
                       " Raw Gloo's text: ", raw_text);
        }
        DTRAIN_THROW("the raw Gloo baseline (", op_name_for_errors,
                     ") failed but every rank answered a dtrain barrier afterwards: ", raw_text);
      }
    };
    if (lead) {
      std::printf("# comm: %d ranks, %s, %s, median of up to %d x %d calls, warm-up %d, rows bounded to %.0f s\n",
                  world, device.str().c_str(), o.dtype.c_str(), o.rounds, o.iters, o.warmup, row_limit);
      std::printf("#\n# %10s %12s %5s %-14s | %10s %8s %8s %6s | %10s %8s %8s %6s | %5s%s\n", "size", "count", "type",
                  "op", "time(us)", "algbw", "busbw", "#wrong", "time(us)", "algbw", "busbw", "#wrong", "calls",
                  raw        ? " | raw gloo(us) overhead"
                  : raw_nccl ? " | raw nccl(us)  b2b(us)    busbw dtrain/raw"
                             : "");
      std::printf("# %10s %12s %5s %-14s | %-35s | %-35s |\n", "(B)", "(elems)", "", "", "out-of-place (GB/s)",
                  "in-place (GB/s)");
    }
    int64_t total_wrong = 0;
    double worst_overhead = 0, fastest_raw_ge_1mib = 0;
    std::vector<std::pair<const CollectiveSpec*, OpSummary>> summaries;
    std::vector<LatencyPoint> latency;
    for (const CollectiveSpec* spec : specs) {
      op_name_for_errors = spec->name;
      OpSummary sum;
      for (double b = static_cast<double>(parse_size(o.min_bytes)); b <= static_cast<double>(parse_size(o.max_bytes));
           b *= o.step_factor) {
        Case cs(comm, *spec, static_cast<size_t>(b), dtype, device);
        if (cs.count() == 0) continue;
        // Agreed figures: wrong elements (summed), the checked call's time and
        // the suite's elapsed time (max over ranks).
        const auto [wrong_here, check_s] = cs.check();
        Tensor wrong = Tensor::full({1}, static_cast<double>(wrong_here), DType::i64);
        comm.all_reduce(wrong).wait();
        Tensor times =
            Tensor::from_vector({static_cast<float>(check_s), static_cast<float>(seconds_since(suite_start))}, {2});
        comm.all_reduce(times, ReduceOp::max).wait();
        const int64_t w = static_cast<int64_t>(wrong.item(0));
        total_wrong += w;
        sum.wrong += w;
        ++sum.rows;
        if (times.item(1) > suite_limit) {
          ++sum.skipped;
          continue;
        }
        const bool has_raw = raw && spec->kind != Collective::reduce_scatter;  // Gloo has no plain reduce-scatter
        const int variants = has_raw || raw_nccl ? 3 : 2;
        // The third variant: one raw call (NCCL on a GPU, Gloo on a CPU).
        auto raw_call = [&]() {
#ifdef DTRAIN_WITH_CUDA
          if (raw_nccl) return nccl->once(*spec, cs.out_of_place(), dtype);
#endif
          return raw_once(cs);
        };
        // Calls are timed one by one, interleaved (dtrain out of place, in
        // place, raw Gloo), and the median is kept: these machines are shared,
        // and a median of interleaved samples treats dtrain and its baseline
        // alike while ignoring the scheduler's multi-millisecond stalls.
        int calls = o.rounds * o.iters, warmup = o.warmup;
        const double per_round = variants * std::max(times.item(0), 1e-7);
        const bool cut = per_round * (calls + warmup) > row_limit;
        if (cut) {
          calls = std::max(1, static_cast<int>(row_limit / per_round));
          warmup = std::min(warmup, calls / 4);
          ++sum.cut;
        }
        for (int i = 0; i < warmup; ++i) {
          cs.once_dtrain(false);
          cs.once_dtrain(true);
          if (variants == 3) raw_call();
        }
        comm.barrier().wait();
        std::vector<double> samples[3];
        for (int i = 0; i < calls; ++i)
          for (int v = 0; v < variants; ++v) samples[v].push_back(v < 2 ? cs.once_dtrain(v == 1) : raw_call());
        std::vector<float> medians(4, 0.0f);
        for (int v = 0; v < variants; ++v) medians[static_cast<size_t>(v)] = static_cast<float>(median_of(samples[v]));
#ifdef DTRAIN_WITH_CUDA
        // nccl-tests' figure: the same number of calls back to back on raw NCCL's stream.
        if (raw_nccl)
          medians[3] = static_cast<float>(nccl->back_to_back(*spec, cs.out_of_place(), dtype, warmup, calls));
#endif
        Tensor slowest = Tensor::from_vector(medians, {4});
        comm.all_reduce(slowest, ReduceOp::max).wait();  // the slowest rank sets the pace
        const double t[2] = {slowest.item(0), slowest.item(1)};
        const double raw_t = variants == 3 ? slowest.item(2) : 0.0;
        const double factor = spec->busbw_factor(world);
        // Raw NCCL runs out of place: compare it with the out-of-place row.
        const double nccl_b2b = raw_nccl ? slowest.item(3) : 0.0;
        const double nccl_busbw = raw_nccl && nccl_b2b > 0 ? cs.bytes() / nccl_b2b / 1e9 * factor : 0.0;
        const double nccl_ratio = raw_nccl && raw_t > 0 ? t[0] / raw_t : 0.0;
        if (raw_nccl && latency_size(static_cast<size_t>(b)))
          latency.push_back({spec->name, cs.bytes(), t[0] * 1e6, raw_t * 1e6});
        const double overhead = has_raw && raw_t > 0 ? (t[1] / raw_t - 1.0) * 100.0 : 0.0;
        if (has_raw && cs.bytes() >= (1u << 20)) {
          worst_overhead = std::max(worst_overhead, overhead);
          fastest_raw_ge_1mib = fastest_raw_ge_1mib == 0 ? raw_t : std::min(fastest_raw_ge_1mib, raw_t);
        }
        sum.bytes = cs.bytes();
        sum.algbw = cs.bytes() / t[0] / 1e9;
        sum.busbw = sum.algbw * factor;
        sum.raw_busbw = has_raw ? cs.bytes() / raw_t / 1e9 * factor : 0.0;
        if (!lead) continue;
        ctx.progress.say(
            "comm", std::string(spec->name) + " " + std::to_string(cs.bytes()) + " B" + (cut ? " (cut short)" : ""));
        std::printf("  %10zu %12lld %5s %-14s", cs.bytes(), static_cast<long long>(cs.count()), o.dtype.c_str(),
                    spec->name);
        for (int in_place = 0; in_place < 2; ++in_place) {
          const double algbw = cs.bytes() / t[in_place] / 1e9;
          std::printf(" | %10.1f %8.3f %8.3f %6lld", t[in_place] * 1e6, algbw, algbw * factor,
                      static_cast<long long>(w));
          const nlohmann::json row = {
              {"op", spec->name},
              {"bytes", cs.bytes()},
              {"count", cs.count()},
              {"dtype", o.dtype},
              {"device", device.str()},
              {"world_size", world},
              {"in_place", in_place == 1},
              {"time_us", t[in_place] * 1e6},
              {"algbw_gbps", algbw},
              {"busbw_gbps", algbw * factor},
              {"busbw_factor", factor},
              {"wrong", w},
              {"calls", calls},
              {"cut_short", cut},
              {"raw_gloo_time_us", has_raw ? nlohmann::json(raw_t * 1e6) : nlohmann::json(nullptr)},
              // Raw Gloo runs in place: compare it with the in-place row only.
              {"overhead_pct", has_raw && in_place == 1 ? nlohmann::json(overhead) : nlohmann::json(nullptr)},
              {"raw_nccl_time_us", raw_nccl && in_place == 0 ? nlohmann::json(raw_t * 1e6) : nlohmann::json(nullptr)},
              {"raw_nccl_b2b_time_us",
               raw_nccl && in_place == 0 ? nlohmann::json(nccl_b2b * 1e6) : nlohmann::json(nullptr)},
              {"raw_nccl_busbw_gbps", raw_nccl && in_place == 0 ? nlohmann::json(nccl_busbw) : nlohmann::json(nullptr)},
              {"dtrain_over_raw_nccl",
               raw_nccl && in_place == 0 ? nlohmann::json(nccl_ratio) : nlohmann::json(nullptr)}};
          ctx.metrics.write(with_fields(row, {{"suite", "comm"}}));
          ctx.report.add_row("comm", row);
        }
        std::printf(" | %5d%s", calls, cut ? "*" : "");
        if (has_raw) std::printf(" | %10.1f %+7.1f%%", raw_t * 1e6, overhead);
        if (raw_nccl) std::printf(" | %12.1f %8.1f %8.3f %9.2fx", raw_t * 1e6, nccl_b2b * 1e6, nccl_busbw, nccl_ratio);
        std::printf("\n");
        std::fflush(stdout);
      }
      summaries.emplace_back(spec, sum);
    }
    if (lead) {
      summarize(ctx, summaries, total_wrong, raw, worst_overhead, layer_us, fastest_raw_ge_1mib);
      if (raw_nccl) summarize_latency(ctx, latency);
    }
    raw_ctx.reset();
  }

 private:
  // dtrain's own per-call cost, free of network noise: a world-1
  // communicator (no transport) timing issue + worker hand-off + wait.
  static double layer_cost_us(Communicator& comm) {
    CommOptions solo_options;
    solo_options.timeout = comm.timeout();
    Communicator solo(std::make_shared<PrefixStore>("bench/solo/" + std::to_string(comm.rank()), comm.store()), 0, 1,
                      solo_options);
    Tensor tiny = Tensor::zeros({2});
    std::vector<double> us;
    for (int i = 0; i < 2000; ++i) {
      const auto t0 = Clock::now();
      solo.all_reduce(tiny).wait();
      us.push_back(seconds_since(t0) * 1e6);
    }
    return median_of(us);
  }

  static void summarize(BenchContext& ctx, const std::vector<std::pair<const CollectiveSpec*, OpSummary>>& summaries,
                        int64_t total_wrong, bool raw, double worst_overhead, double layer_us, double fastest_raw) {
    const int world = ctx.comm.size();
    std::printf("# out-of-bounds values: %lld (all checked); * = row cut short by its time bound\n",
                static_cast<long long>(total_wrong));
    // A slow rank drags every collective; dtrain names it (docs/comm.md, stragglers).
    const std::string straggler = ctx.comm.straggler_warning();
    std::printf("# %s\n", straggler.empty() ? "stragglers: none seen" : straggler.c_str());
    if (raw) {
      std::printf("# dtrain over raw Gloo, worst in-place row at >= 1 MiB: %+.1f%% (noisy on a shared machine)\n",
                  worst_overhead);
      if (fastest_raw > 0)
        std::printf(
            "# dtrain per-call cost (world-1 communicator): %.1f us = %.2f%% of the fastest raw Gloo call at"
            " >= 1 MiB (%.1f us)\n",
            layer_us, 100.0 * layer_us * 1e-6 / fastest_raw, fastest_raw * 1e6);
    }
    // Within one node of known GPUs the link's datasheet bandwidth is the
    // reference; on CPU raw Gloo measured beside dtrain; across nodes none.
    const auto env = job_env_from_environment();
    const bool one_node = env.local_world_size == world;
    const DatasheetPeak* peak = nullptr;
    if (ctx.device.is_cuda() && !ctx.facts["gpu"].is_null() && !ctx.facts["gpu"]["devices"].empty())
      peak = find_datasheet_peak(ctx.facts["gpu"]["devices"][0]["name"].get<std::string>());
    int rows = 0, cut = 0, skipped = 0;
    for (const auto& [spec, s] : summaries) {
      rows += s.rows;
      cut += s.cut;
      skipped += s.skipped;
      Check c{"comm",      std::string(spec->name) + " busbw at " + std::to_string(s.bytes >> 10) + " KiB",
              s.busbw,     "GB/s",
              0,           "",
              0.6,         0.3,
              s.wrong > 0, ""};
      if (world == 1) {
        c.name = std::string(spec->name) + " algbw at " + std::to_string(s.bytes >> 10) + " KiB";
        c.value = s.algbw;
        c.detail = "one rank: no bus traffic, algbw shown";
      } else if (peak != nullptr && one_node) {
        c.reference = peak->link_gbps;
        c.reference_kind = std::string("datasheet link bandwidth: ") + peak->source;
      } else if (s.raw_busbw > 0) {
        c.reference = s.raw_busbw;
        c.reference_kind = "raw Gloo measured in this run";
        // Failed only when far off (a broken path); dtrain's own overhead
        // over raw Gloo shows as "below expectation".
        c.ok_at = 0.8;
        c.fail_below = 0.1;
      }
      if (s.wrong > 0) c.detail = std::to_string(s.wrong) + " wrong elements";
      ctx.report.add_check(c);
    }
    Check bound{"comm",
                "rows finished within their time bound",
                static_cast<double>(rows - cut - skipped),
                "rows",
                static_cast<double>(rows),
                "rows run",
                1.0,
                0.0,
                false,
                ""};
    if (cut + skipped > 0)
      bound.detail = std::to_string(cut) + " row(s) cut short (its checked call predicted more than --row-seconds), " +
                     std::to_string(skipped) + " skipped past --suite-seconds";
    ctx.report.add_check(bound);
    auto& section = ctx.report.section("comm");
    section = {{"world_size", world},
               {"device", ctx.device.str()},
               {"wrong", total_wrong},
               {"worst_overhead_pct_ge_1mib", raw ? nlohmann::json(worst_overhead) : nlohmann::json(nullptr)},
               {"layer_cost_us", ctx.device.is_cpu() ? nlohmann::json(layer_us) : nlohmann::json(nullptr)},
               {"straggler_warning", straggler.empty() ? nlohmann::json(nullptr) : nlohmann::json(straggler)}};
    ctx.metrics.write(with_fields(section, {{"suite", "comm"}, {"final", true}}));
  }

  // dtrain's per-call latency (issue + wait, median) next to raw NCCL's
  // (issue + stream synchronise, median) at 8 B and 8 MiB: one line and one
  // check each; ok within 10% (raw / dtrain >= 1 / 1.1), failed only past 10x
  // (a broken path): a miss of the goal reads "below expectation".
  static void summarize_latency(BenchContext& ctx, const std::vector<LatencyPoint>& latency) {
    nlohmann::json points = nlohmann::json::array();
    for (const auto& p : latency) {
      const double ratio = p.dtrain_us / p.raw_nccl_us;
      std::printf("# dtrain per-call latency, %s %zu B: %.1f us, raw NCCL %.1f us: %+.1f%% (goal: within 10%%)\n",
                  p.op.c_str(), p.bytes, p.dtrain_us, p.raw_nccl_us, (ratio - 1.0) * 100.0);
      points.push_back({{"op", p.op}, {"bytes", p.bytes}, {"dtrain_us", p.dtrain_us}, {"raw_nccl_us", p.raw_nccl_us}});
      if (p.op != "all_reduce") continue;
      ctx.report.add_check(
          {"comm", "all_reduce " + std::to_string(p.bytes) + " B per-call latency, raw NCCL / dtrain",
           p.raw_nccl_us / p.dtrain_us, "ratio", 1.0, "dtrain's latency equal to raw NCCL's", 1.0 / 1.1, 0.1, false,
           "dtrain " + std::to_string(p.dtrain_us) + " us, raw NCCL " + std::to_string(p.raw_nccl_us) + " us"});
    }
    auto& section = ctx.report.section("comm");
    section["latency_vs_raw_nccl"] = points;
  }

  Options o_;
};

DTRAIN_REGISTER_BENCH_SUITE(CommSuite);

}  // namespace
}  // namespace dtrain::bench
