// The comm suite: collectives in the shape of nccl-tests.
//
// For each operation and size: one checked run (#wrong = elements that
// differ from the hand-computable expectation, summed over ranks), then
// warm-up, then rounds x iters timed calls out of place and in place
// (interleaved with the raw Gloo baseline). time is the median per-call
// latency, the max over ranks (see the note in run() for why not the mean). algbw = bytes / time; busbw = algbw *
// factor, with nccl-tests' factors (all_reduce 2(n-1)/n; all_gather,
// reduce_scatter, all_to_all (n-1)/n; broadcast 1). For all_gather and
// reduce_scatter, bytes is the whole (gathered / scattered) array.
//
// On CPU the same run also measures, as baselines: memcpy bandwidth of this
// machine, and the same operations called on raw Gloo (no dtrain layer, no
// worker thread), so the per-call overhead of dtrain is printed as a ratio.
#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/alltoall.h>
#include <gloo/broadcast.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/transport/tcp/device.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <sstream>

#include "bench_suite.h"
#include "comm/gloo/gloo_store_adapter.h"
#include "dtrain/comm.h"

namespace dtrain::bench {
namespace {

using Clock = std::chrono::steady_clock;
using namespace dtrain::comm;

struct Options {
  std::string min_bytes = "8", max_bytes = "256M";
  double step_factor = 2;
  int iters = 20, warmup = 5, rounds = 5;
  std::string ops = "all_reduce,all_gather,reduce_scatter,broadcast,all_to_all";
  std::string dtype = "f32";
  std::string device = "cpu";
  bool no_raw = false;
};

size_t parse_size(const std::string& s) {
  size_t used = 0;
  double v = std::stod(s, &used);
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

double busbw_factor(const std::string& op, int n) {
  if (op == "all_reduce") return 2.0 * (n - 1) / n;
  if (op == "broadcast") return 1.0;
  return static_cast<double>(n - 1) / n;  // all_gather, reduce_scatter, all_to_all
}

double memcpy_gbps(size_t bytes) {
  std::vector<char> a(bytes, 1), b(bytes, 0);
  std::memcpy(b.data(), a.data(), bytes);  // touch pages
  const int reps = 3;
  const auto t0 = Clock::now();
  for (int i = 0; i < reps; ++i) std::memcpy(i % 2 ? a.data() : b.data(), i % 2 ? b.data() : a.data(), bytes);
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  return bytes * reps / s / 1e9;
}

// Rank r's input element i: small integers, exact in every dtype after sums.
double input_value(int rank, int64_t i) {
  return static_cast<double>((rank + i) % 5 + 1);
}

// One collective at one size: sets up buffers, runs dtrain and raw Gloo.
class Case {
 public:
  Case(Communicator& c, const std::string& op, size_t bytes, DType dtype, Device device)
      : c_(c), op_(op), device_(device), world_(c.size()), rank_(c.rank()) {
    const size_t es = dtype_size(dtype);
    count_ = static_cast<int64_t>(bytes / es);
    if (op != "all_reduce" && op != "broadcast") count_ -= count_ % world_;  // whole chunks
    bytes_ = static_cast<size_t>(count_) * es;
    const int64_t in_count = op == "all_gather" ? count_ / world_ : count_;
    const int64_t out_count = op == "reduce_scatter" ? count_ / world_ : count_;
    std::vector<float> v(static_cast<size_t>(in_count));
    for (int64_t i = 0; i < in_count; ++i) v[i] = static_cast<float>(input_value(rank_, i));
    host_input_ = Tensor::from_vector(v, {in_count}, dtype);
    input_ = host_input_.to(device);
    output_ = Tensor::zeros({out_count}, dtype, device);
  }

  size_t bytes() const { return bytes_; }
  int64_t count() const { return count_; }

  Work issue(bool in_place) {
    if (op_ == "all_reduce") return in_place ? c_.all_reduce(input_) : c_.all_reduce(input_, output_);
    if (op_ == "broadcast") return c_.broadcast(in_place ? input_ : output_, 0);
    if (op_ == "all_gather") {
      if (!in_place) return c_.all_gather(input_, output_);
      const int64_t n = input_.numel();
      return c_.all_gather(output_.narrow(rank_ * n, n), output_);
    }
    if (op_ == "reduce_scatter") {
      if (!in_place) return c_.reduce_scatter(input_, output_);
      const int64_t n = output_.numel();
      return c_.reduce_scatter(input_, input_.narrow(rank_ * n, n));
    }
    if (op_ == "all_to_all") return in_place ? c_.all_to_all(input_, input_) : c_.all_to_all(input_, output_);
    DTRAIN_THROW("unknown op '", op_, "'");
  }

  // Runs once out of place on fresh inputs and counts wrong elements.
  int64_t check() {
    input_.copy_(host_input_);
    if (op_ == "broadcast") output_.copy_(host_input_);
    issue(false).wait();
    const Tensor out = output_.to(Device::cpu());
    int64_t wrong = 0;
    const int64_t n = out.numel();
    const int64_t in_n = host_input_.numel();
    for (int64_t i = 0; i < n; ++i) {
      double want = 0;
      if (op_ == "all_reduce") {
        for (int r = 0; r < world_; ++r) want += input_value(r, i);
      } else if (op_ == "broadcast") {
        want = input_value(0, i);
      } else if (op_ == "all_gather") {
        want = input_value(static_cast<int>(i / in_n), i % in_n);
      } else if (op_ == "reduce_scatter") {
        for (int r = 0; r < world_; ++r) want += input_value(r, rank_ * n + i);
      } else if (op_ == "all_to_all") {
        const int64_t chunk = n / world_;
        want = input_value(static_cast<int>(i / chunk), rank_ * chunk + i % chunk);
      }
      wrong += out.item(i) != want;
    }
    return wrong;
  }

  // Seconds for one call, issued and waited for.
  double once_dtrain(bool in_place) {
    const auto t0 = Clock::now();
    issue(in_place).wait();
    return std::chrono::duration<double>(Clock::now() - t0).count();
  }

  // The same operation on raw Gloo (in place where Gloo allows), on this thread.
  double once_raw(const std::shared_ptr<gloo::Context>& ctx) {
    const auto t0 = Clock::now();
    {
      auto* in = static_cast<float*>(input_.data_ptr());
      auto* out = static_cast<float*>(output_.data_ptr());
      if (op_ == "all_reduce") {
        gloo::AllreduceOptions o(ctx);
        o.setOutput(in, static_cast<size_t>(input_.numel()));
        o.setReduceFunction(static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<float>));
        gloo::allreduce(o);
      } else if (op_ == "broadcast") {
        gloo::BroadcastOptions o(ctx);
        o.setOutput(in, static_cast<size_t>(input_.numel()));
        o.setRoot(0);
        gloo::broadcast(o);
      } else if (op_ == "all_gather") {
        gloo::AllgatherOptions o(ctx);
        o.setInput(in, static_cast<size_t>(input_.numel()));
        o.setOutput(out, static_cast<size_t>(output_.numel()));
        gloo::allgather(o);
      } else if (op_ == "all_to_all") {
        gloo::AlltoallOptions o(ctx);
        o.setInput(in, static_cast<size_t>(input_.numel()));
        o.setOutput(out, static_cast<size_t>(output_.numel()));
        gloo::alltoall(o);
      }
    }
    return std::chrono::duration<double>(Clock::now() - t0).count();
  }

 private:
  Communicator& c_;
  std::string op_;
  Device device_;
  int world_, rank_;
  int64_t count_ = 0;
  size_t bytes_ = 0;
  Tensor host_input_, input_, output_;
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
    g->add_option("--ops", o_.ops, "comma-separated operations");
    g->add_option("--dtype", o_.dtype, "f32, bf16, f16, i32, i64");
    g->add_option("--device", o_.device, "cpu (Gloo) or cuda (NCCL, cuda:LOCAL_RANK)");
    g->add_flag("--no-raw-gloo", o_.no_raw, "skip the raw Gloo baseline");
  }

  int run(const CommonOptions& common, MetricsWriter& metrics) override {
    Options o = o_;
    if (common.quick) {
      if (o.max_bytes == "256M") o.max_bytes = "8M";
      if (o.step_factor == 2) o.step_factor = 4;
      o.iters = std::min(o.iters, 7);
      o.warmup = std::min(o.warmup, 2);
      o.rounds = std::min(o.rounds, 3);
    }
    auto comm = init_process_group();
    const int rank = comm->rank(), world = comm->size();
    const DType dtype = dtype_from_name(o.dtype);
    const JobEnv env = job_env_from_environment();
    const Device device = o.device == "cuda" ? Device::cuda(env.local_rank) : Device::parse(o.device);
    check_device_available(device);
    const bool cpu = device.is_cpu();
    const bool raw = cpu && !o.no_raw && dtype == DType::f32;
    const bool lead = rank == 0;

    std::shared_ptr<gloo::Context> raw_ctx;
    if (raw) {
      // Raw Gloo's own full mesh, rendezvousing through the job's store.
      gloo::transport::tcp::attr attr;
      attr.hostname = std::getenv("DTRAIN_GLOO_ADDR") ? std::getenv("DTRAIN_GLOO_ADDR") : env.master_addr;
      auto dev = gloo::transport::tcp::CreateDevice(attr);
      auto ctx = std::make_shared<gloo::rendezvous::Context>(rank, world);
      ctx->setTimeout(comm->timeout());
      GlooStoreAdapter adapter(std::make_shared<PrefixStore>("bench/raw_gloo", comm->store()));
      ctx->connectFullMesh(adapter, dev);
      raw_ctx = ctx;
    }
    double mem_gbps = 0;
    if (cpu) mem_gbps = memcpy_gbps(common.quick ? (64u << 20) : (256u << 20));
    // dtrain's own per-call cost, free of network noise: a world-1
    // communicator (no transport) timing issue + worker hand-off + wait.
    double layer_us = 0;
    if (cpu) {
      CommOptions solo_options;
      solo_options.timeout = comm->timeout();
      Communicator solo(std::make_shared<PrefixStore>("bench/solo/" + std::to_string(rank), comm->store()), 0, 1,
                        solo_options);
      Tensor tiny = Tensor::zeros({2});
      std::vector<double> us;
      for (int i = 0; i < 2000; ++i) {
        const auto t0 = Clock::now();
        solo.all_reduce(tiny).wait();
        us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
      }
      std::nth_element(us.begin(), us.begin() + us.size() / 2, us.end());
      layer_us = us[us.size() / 2];
    }
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
          comm->barrier().wait();
        } catch (const std::exception& d) {
          DTRAIN_THROW("the raw Gloo baseline (", op_name_for_errors, ") failed; dtrain's view: ", d.what(),
                       " Raw Gloo's text: ", raw_text);
        }
        DTRAIN_THROW("the raw Gloo baseline (", op_name_for_errors,
                     ") failed but every rank answered a dtrain "
                     "barrier afterwards: ",
                     raw_text);
      }
    };
    double fastest_raw_ge_1mib = 0;
    if (lead) {
      std::printf("# dtrain-bench --suite comm: %d ranks, %s, %s, median of %d x %d calls, warm-up %d\n", world,
                  device.str().c_str(), o.dtype.c_str(), o.rounds, o.iters, o.warmup);
      if (cpu) std::printf("# memcpy bandwidth of this machine (1 thread, same run): %.2f GB/s\n", mem_gbps);
      std::printf("#\n# %10s %12s %5s %-14s | %10s %8s %8s %6s | %10s %8s %8s %6s%s\n", "size", "count", "type", "op",
                  "time(us)", "algbw", "busbw", "#wrong", "time(us)", "algbw", "busbw", "#wrong",
                  raw ? " | raw gloo(us) overhead" : "");
      std::printf("# %10s %12s %5s %-14s | %-35s | %-35s\n", "(B)", "(elems)", "", "", "out-of-place (GB/s)",
                  "in-place (GB/s)");
    }
    int64_t total_wrong = 0;
    double worst_overhead = 0;
    std::stringstream ops(o.ops);
    std::string op;
    while (std::getline(ops, op, ',')) {
      op_name_for_errors = op;
      for (double b = static_cast<double>(parse_size(o.min_bytes)); b <= static_cast<double>(parse_size(o.max_bytes));
           b *= o.step_factor) {
        Case cs(*comm, op, static_cast<size_t>(b), dtype, device);
        if (cs.count() == 0) continue;
        Tensor wrong = Tensor::full({1}, static_cast<double>(cs.check()), DType::i64);
        comm->all_reduce(wrong).wait();
        // Calls are timed one by one, interleaved (dtrain out of place, in
        // place, raw Gloo), and the median is kept: these machines are shared,
        // and a median of interleaved samples treats dtrain and its baseline
        // alike while ignoring the scheduler's multi-millisecond stalls.
        const bool has_raw = raw && op != "reduce_scatter";  // Gloo has no plain reduce-scatter to compare
        const int variants = has_raw ? 3 : 2;
        for (int i = 0; i < o.warmup; ++i) {
          cs.once_dtrain(false);
          cs.once_dtrain(true);
          if (has_raw) raw_once(cs);
        }
        comm->barrier().wait();
        std::vector<double> samples[3];
        for (int i = 0; i < o.rounds * o.iters; ++i) {
          for (int v = 0; v < variants; ++v) samples[v].push_back(v < 2 ? cs.once_dtrain(v == 1) : raw_once(cs));
        }
        std::vector<float> medians(3, 0.0f);
        for (int v = 0; v < variants; ++v) {
          auto& x = samples[v];
          std::nth_element(x.begin(), x.begin() + x.size() / 2, x.end());
          medians[v] = static_cast<float>(x[x.size() / 2]);
        }
        Tensor times = Tensor::from_vector(medians, {3});
        comm->all_reduce(times, ReduceOp::max).wait();  // the slowest rank sets the pace
        const double t[2] = {times.item(0), times.item(1)};
        const double raw_t = has_raw ? times.item(2) : 0.0;
        const int64_t w = static_cast<int64_t>(wrong.item(0));
        total_wrong += w;
        const double factor = busbw_factor(op, world);
        const double overhead = has_raw && raw_t > 0 ? (t[1] / raw_t - 1.0) * 100.0 : 0.0;
        if (has_raw && cs.bytes() >= (1u << 20)) {
          worst_overhead = std::max(worst_overhead, overhead);
          fastest_raw_ge_1mib = fastest_raw_ge_1mib == 0 ? raw_t : std::min(fastest_raw_ge_1mib, raw_t);
        }
        if (!lead) continue;
        std::printf("  %10zu %12lld %5s %-14s", cs.bytes(), static_cast<long long>(cs.count()), o.dtype.c_str(),
                    op.c_str());
        for (int in_place = 0; in_place < 2; ++in_place) {
          const double algbw = cs.bytes() / t[in_place] / 1e9;
          std::printf(" | %10.1f %8.3f %8.3f %6lld", t[in_place] * 1e6, algbw, algbw * factor,
                      static_cast<long long>(w));
          metrics.write(
              {{"suite", "comm"},
               {"op", op},
               {"bytes", cs.bytes()},
               {"count", cs.count()},
               {"dtype", o.dtype},
               {"device", device.str()},
               {"world_size", world},
               {"in_place", in_place == 1},
               {"time_us", t[in_place] * 1e6},
               {"algbw_gbps", algbw},
               {"busbw_gbps", algbw * factor},
               {"wrong", w},
               {"raw_gloo_time_us", has_raw ? nlohmann::json(raw_t * 1e6) : nlohmann::json(nullptr)},
               // Raw Gloo runs in place: compare it with the in-place row only.
               {"overhead_pct", has_raw && in_place == 1 ? nlohmann::json(overhead) : nlohmann::json(nullptr)}});
        }
        if (has_raw) std::printf(" | %10.1f %+7.1f%%", raw_t * 1e6, overhead);
        std::printf("\n");
        std::fflush(stdout);
      }
    }
    if (lead) {
      std::printf("# out-of-bounds values: %lld (all checked)\n", static_cast<long long>(total_wrong));
      // A slow rank drags every collective; dtrain names it (docs/comm.md, stragglers).
      const std::string straggler = comm->straggler_warning();
      std::printf("# %s\n", straggler.empty() ? "stragglers: none seen" : straggler.c_str());
      if (raw) {
        std::printf(
            "# dtrain over raw Gloo, measured side by side, worst in-place row at >= 1 MiB: %+.1f%%"
            " (noisy on a shared machine)\n",
            worst_overhead);
        if (fastest_raw_ge_1mib > 0)
          std::printf(
              "# dtrain per-call cost (world-1 communicator, no transport): %.1f us median = %.2f%% of the"
              " fastest raw Gloo call at >= 1 MiB (%.1f us) (goal < 5%%)\n",
              layer_us, 100.0 * layer_us * 1e-6 / fastest_raw_ge_1mib, fastest_raw_ge_1mib * 1e6);
      }
      metrics.write(
          {{"suite", "comm"},
           {"final", true},
           {"world_size", world},
           {"device", device.str()},
           {"memcpy_gbps", cpu ? nlohmann::json(mem_gbps) : nlohmann::json(nullptr)},
           {"worst_overhead_pct_ge_1mib", raw ? nlohmann::json(worst_overhead) : nlohmann::json(nullptr)},
           {"layer_cost_us", cpu ? nlohmann::json(layer_us) : nlohmann::json(nullptr)},
           {"layer_cost_pct_ge_1mib", fastest_raw_ge_1mib > 0
                                          ? nlohmann::json(100.0 * layer_us * 1e-6 / fastest_raw_ge_1mib)
                                          : nlohmann::json(nullptr)},
           {"wrong", total_wrong},
           {"straggler_warning",
            comm->straggler_warning().empty() ? nlohmann::json(nullptr) : nlohmann::json(comm->straggler_warning())}});
    }
    raw_ctx.reset();
    destroy_process_group();
    return total_wrong == 0 ? 0 : 1;
  }

 private:
  Options o_;
};

DTRAIN_REGISTER_BENCH_SUITE(CommSuite);

}  // namespace
}  // namespace dtrain::bench
