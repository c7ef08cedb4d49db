#include "training.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>

#include "dtrain/allocator.h"
#include "dtrain/comm/init.h"
#include "dtrain/data/byte_tokenizer.h"
#include "dtrain/parallel/data_parallel.h"
#include "metrics_writer.h"

using namespace dtrain;

void add_engine_options(CLI::App& app, EngineOptions& e) {
  app.add_option("--zero", e.zero, "ZeRO stage of the data-parallel engine: 0 (DDP, the default), 1, 2 or 3")
      ->check(CLI::Range(0, 3));
  app.add_option("--grad-accum", e.grad_accum,
                 "micro-steps per optimizer step (per-rank micro-batch = "
                 "batch / world / grad-accum)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--precision", e.precision,
                 "f32; bf16 or f16: the model in that dtype, f32 master weights and moments in the engine "
                 "(f16 with dynamic loss scaling)")
      ->capture_default_str();
  app.add_flag("--dry-run", e.dry_run, "print the data-parallel plan and memory ledger, then exit");
  app.add_option("--first-bucket-mb", e.first_bucket_mb, "size of the first gradient bucket (stages 0-2)")
      ->capture_default_str();
  app.add_option("--bucket-mb", e.bucket_mb, "size of the other gradient buckets (stages 0-2)")->capture_default_str();
  app.add_option("--prefetch", e.prefetch, "ZeRO-3: units gathered ahead of use")->capture_default_str();
  app.add_flag("--no-overlap", e.no_overlap, "communicate after backward instead of during it (a baseline)");
  app.add_option("--trace-out", e.trace_out, "write rank 0's engine trace (JSON Lines) to this file");
  app.add_option("--loss-scale-window", e.loss_scale_window,
                 "f16: steps without overflow before the loss scale doubles")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
}

namespace {

bool launched_by_a_launcher() {
  return std::getenv("WORLD_SIZE") != nullptr || std::getenv("SLURM_NTASKS") != nullptr ||
         std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr;
}

// Under a launcher: the job's communicator. Otherwise this process alone,
// with no store and no network (the engine at world size 1 communicates nothing).
std::shared_ptr<comm::Communicator> make_communicator() {
  if (launched_by_a_launcher()) return comm::init_process_group();
  return comm::Communicator::single_process();
}

double mib(int64_t b) {
  return static_cast<double>(b) / (1024.0 * 1024.0);
}

// Every rank's values of a and of b, gathered (for per-rank metrics). The
// communicator at world size 1 copies, so one process needs no special case.
struct PerRank {
  std::vector<double> a, b;
};
PerRank gather_per_rank(comm::Communicator& c, float a, float b) {
  Tensor in = Tensor::from_vector({a, b}, {2});
  Tensor out = Tensor::empty({2 * static_cast<int64_t>(c.size())}, DType::f32);
  c.all_gather(in, out).wait();
  PerRank r;
  for (int64_t i = 0; i < c.size(); ++i) {
    r.a.push_back(out.item(2 * i));
    r.b.push_back(out.item(2 * i + 1));
  }
  return r;
}

}  // namespace

int run_training(const TrainOptions& base, const EngineOptions& d, const CheckpointOptions& c) {
  struct GroupGuard {  // tears the default communicator down after the engine
    ~GroupGuard() {
      if (comm::is_initialized()) comm::destroy_process_group();
    }
  } group_guard;
  auto comm = make_communicator();
  const int rank = comm->rank(), world = comm->size();
  const bool lead = rank == 0;
  TrainOptions opt = base;
  const parallel::Precision precision = parallel::parse_precision(d.precision);
  opt.dtype = parallel::precision_dtype(precision);
  opt.rank = rank;
  opt.world_size = world;
  if (opt.device == "cuda" && launched_by_a_launcher()) {  // one GPU per local rank
    opt.device = "cuda:" + std::to_string(comm::job_env_from_environment().local_rank);
  }
  DTRAIN_CHECK(opt.batch % (static_cast<int64_t>(world) * d.grad_accum) == 0, "--batch ", opt.batch,
               " must be divisible by world size x --grad-accum = ", world, " x ", d.grad_accum,
               " (the global batch is split evenly over ranks and micro-steps)");
  const int64_t micro_rows = opt.batch / world / d.grad_accum;

  Trainer t;
  t.opt = opt;
  {
    // ZeRO-3 builds the model as shapes only: the engine fills each rank's
    // shards in place, bitwise as the whole model would start, so no rank
    // ever holds the whole model and nothing is broadcast (startup_peak_bytes
    // shows it). Pretrained weights need values to load into.
    std::optional<nn::DeferredInit> deferred;
    if (d.zero == 3 && c.init_from.empty()) deferred.emplace();
    make_model(t);
  }
  init_from_pretrained(c, t);  // before the engine broadcasts rank 0's weights
  make_data(t);
  make_schedule(t);

  parallel::DataParallelOptions o;
  o.stage = d.zero < 0 ? 0 : d.zero;
  o.grad_accumulation = d.grad_accum;
  o.precision = precision;
  o.loss_scale_window = d.loss_scale_window;
  o.first_bucket_bytes = std::max<int64_t>(1, static_cast<int64_t>(d.first_bucket_mb * 1024 * 1024));
  o.bucket_bytes = std::max<int64_t>(1, static_cast<int64_t>(d.bucket_mb * 1024 * 1024));
  o.prefetch_depth = d.prefetch;
  o.overlap = !d.no_overlap;
  o.trace = !d.trace_out.empty();
  parallel::DataParallel dp(*t.model, comm, o);
  // AdamW over the engine's f32 masters (this rank's shard from stage 1 on).
  t.optimizer = std::make_unique<optim::AdamW>(dp.param_groups(opt.weight_decay));
  t.optimizer->init_state();  // so the ledger shows the optimizer state from the start

  // The plan and the memory ledger are printed when asked for (--zero,
  // --dry-run) or when there is more than one rank to share the state.
  const bool show_plan = world > 1 || d.zero >= 0 || d.dry_run;
  if (lead) {
    std::printf("model: %s, %.2fM parameters, device %s\n", t.model->config().str().c_str(),
                static_cast<double>(t.model->num_parameters()) / 1e6, t.device.str().c_str());
    std::printf("data: %s, global batch %lld x %lld tokens = %d rank(s) x %d micro-step(s) x %lld sequences\n",
                opt.data.empty() ? "built-in additions" : opt.data.c_str(), static_cast<long long>(opt.batch),
                static_cast<long long>(opt.seq_len), world, d.grad_accum, static_cast<long long>(micro_rows));
    if (show_plan) {
      std::printf("%s", dp.describe_plan().c_str());
      std::printf("at start: %s",
                  parallel::format_ledger(dp.ledger(t.optimizer.get()), dp.predicted(), o.stage, world).c_str());
    }
    std::fflush(stdout);
  }
  if (d.dry_run) {
    if (!lead) {
      const auto m = dp.ledger(t.optimizer.get());
      std::printf("rank %d: model state %.3f MiB (predicted %.3f MiB)\n", rank, mib(m.model_state()),
                  mib(dp.predicted().model_state()));
    }
    return 0;
  }

  Checkpointer checkpoints(c, t, dp, *comm);
  const int64_t first_step = checkpoints.resume();
  // What building the model, the engine and the optimizer (and a resume) took
  // at their peak, before the first step's activations.
  const int64_t startup_peak = memory_stats(t.device).peak_bytes;
  MetricsWriter metrics(lead ? opt.metrics_out : std::string());
  const int64_t steps = opt.steps;
  double total_ms = 0.0, total_tokens = 0.0;
  float last_loss = 0.0f;
  EvalResult last_eval;
  for (int64_t step = first_step; step < steps; ++step) {
    reset_peak_memory(t.device);
    const auto start = std::chrono::steady_clock::now();
    const data::Batch& batch = t.train_data->next();
    float loss_sum = 0.0f;
    for (int m = 0; m < d.grad_accum; ++m) {
      Tensor x = batch.inputs.narrow(m * micro_rows, micro_rows);
      Tensor y = batch.targets.narrow(m * micro_rows, micro_rows);
      loss_sum += t.model->forward(x, y, dp.grad_scale());
      t.model->backward();
    }
    const float lr = t.schedule.lr(step);
    const parallel::StepResult r = dp.step(*t.optimizer, lr, opt.grad_clip);
    const double step_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    const float loss = dp.average(loss_sum / static_cast<float>(d.grad_accum));
    const int64_t peak = memory_stats(t.device).peak_bytes;
    const PerRank per_rank = gather_per_rank(*comm, static_cast<float>(step_ms), static_cast<float>(peak));
    const std::vector<double>& rank_ms = per_rank.a;
    const std::vector<double>& rank_peak = per_rank.b;
    const double max_ms = *std::max_element(rank_ms.begin(), rank_ms.end());
    const double max_peak = *std::max_element(rank_peak.begin(), rank_peak.end());
    const double tokens = static_cast<double>(opt.batch * opt.seq_len);
    const double tok_s = tokens / (max_ms / 1000.0);
    last_loss = loss;
    if (step > first_step) {  // the first step allocates; leave it out of the average
      total_ms += max_ms;
      total_tokens += tokens;
    }
    if (step == first_step && lead && show_plan) {
      std::printf("after step 1: %s",
                  parallel::format_ledger(dp.ledger(t.optimizer.get()), dp.predicted(), o.stage, world).c_str());
    }
    nlohmann::json record = {{"step", step + 1},
                             {"loss", loss},
                             {"tokens_per_s", tok_s},
                             {"step_ms", max_ms},
                             {"lr", lr},
                             {"grad_norm", r.grad_norm},
                             {"rank_step_ms", rank_ms},
                             {"rank_peak_bytes", rank_peak}};
    if (r.skipped) record["skipped"] = true;
    if (precision == parallel::Precision::f16) record["loss_scale"] = r.loss_scale;
    if (lead) {
      std::printf("step %5lld/%lld | loss %.4f | lr %.2e | norm %.3f | %7.1f ms | %9.0f tok/s | peak %.1f MiB%s\n",
                  static_cast<long long>(step) + 1, static_cast<long long>(steps), loss, lr, r.grad_norm, max_ms, tok_s,
                  mib(static_cast<int64_t>(max_peak)), r.skipped ? " | skipped (f16 overflow)" : "");
    }
    const bool stop = c.stop_at >= 0 && step + 1 >= c.stop_at && step + 1 < steps;
    const bool preempted = checkpoints.after_step(step + 1, stop);
    if (stop || preempted) {
      checkpoints.finish();
      std::fflush(stdout);
      metrics.write(record);
      if (lead && stop) std::printf("stopping after step %lld (--stop-at)\n", static_cast<long long>(step) + 1);
      return 0;
    }
    const bool last = step + 1 == steps;
    if ((opt.eval_every > 0 && (step + 1) % opt.eval_every == 0) || last) {
      // Every rank evaluates (ZeRO-3 gathers parameters collectively); losses are averaged.
      last_eval = evaluate(t);
      if (last_eval.val_loss >= 0) last_eval.val_loss = dp.average(static_cast<float>(last_eval.val_loss));
      if (lead) {
        std::printf("eval @ step %lld:", static_cast<long long>(step) + 1);
        if (last_eval.val_loss >= 0) {
          std::printf(" val loss %.4f", last_eval.val_loss);
          record["val_loss"] = last_eval.val_loss;
        }
        if (last_eval.addition) {
          std::printf(" | held-out sums: exact %.1f%%, digits %.1f%% (format-only baseline %.1f%%)",
                      100.0 * last_eval.addition->exact, 100.0 * last_eval.addition->digits,
                      100.0 * last_eval.baseline->digits);
          record["accuracy_exact"] = last_eval.addition->exact;
          record["accuracy_digits"] = last_eval.addition->digits;
          record["baseline_digits"] = last_eval.baseline->digits;
        }
        std::printf("\n");
      }
    }
    std::fflush(stdout);
    metrics.write(record);
  }

  checkpoints.finish();
  const parallel::MemoryLedger measured = dp.ledger(t.optimizer.get());
  const parallel::MemoryLedger predicted = dp.predicted();
  const PerRank model_states =
      gather_per_rank(*comm, static_cast<float>(measured.model_state()), static_cast<float>(startup_peak));
  nlohmann::json summary = {{"final", true},
                            {"steps", steps},
                            {"final_loss", last_loss},
                            {"tokens_per_s", total_ms > 0 ? total_tokens / (total_ms / 1000.0) : 0.0},
                            {"parameters", t.model->num_parameters()},
                            {"config", t.model->config().str()},
                            {"zero_stage", o.stage},
                            {"world_size", world},
                            {"grad_accum", d.grad_accum},
                            {"precision", d.precision},
                            {"model_state_bytes", measured.model_state()},
                            {"model_state_bytes_predicted", predicted.model_state()},
                            {"rank_model_state_bytes", model_states.a},
                            {"startup_peak_bytes", startup_peak},
                            {"rank_startup_peak_bytes", model_states.b},
                            {"parameter_bytes", measured.parameters},
                            {"gradient_bytes", measured.gradients},
                            {"optimizer_state_bytes", measured.optimizer_state}};
  if (last_eval.val_loss >= 0) summary["val_loss"] = last_eval.val_loss;
  if (last_eval.addition) {
    summary["accuracy_exact"] = last_eval.addition->exact;
    summary["accuracy_digits"] = last_eval.addition->digits;
    summary["baseline_digits"] = last_eval.baseline->digits;
  }
  metrics.write(summary);
  if (lead) {
    std::printf("model state per rank: %.3f MiB measured, %.3f MiB predicted (ZeRO stage %d, %d ranks)\n",
                mib(measured.model_state()), mib(predicted.model_state()), o.stage, world);
  }

  if (opt.sample_tokens > 0 && !opt.sample_prompt.empty()) {  // every rank runs it (ZeRO-3 gathers)
    std::mt19937_64 rng(opt.seed);
    const auto prompt = data::encode_bytes_i32(opt.sample_prompt);
    const auto out = nn::generate(*t.model, prompt, opt.sample_tokens, opt.temperature, rng);
    if (lead) {
      std::printf("sample (%s): %s%s\n", opt.temperature > 0 ? "temperature" : "greedy", opt.sample_prompt.c_str(),
                  data::decode_bytes(out).c_str());
    }
  }
  if (lead && dp.trace() != nullptr) {  // written aside, then renamed: never a half-written file
    const std::string tmp = d.trace_out + ".tmp";
    {
      std::ofstream out(tmp);
      out << dp.trace()->to_jsonl();
      out.close();
      DTRAIN_CHECK(out.good(), "writing the trace to ", tmp, " failed (disk full?)");
    }
    std::filesystem::rename(tmp, d.trace_out);
  }
  std::fflush(stdout);
  return 0;
}
