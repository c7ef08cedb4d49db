#include "checkpointing.h"

#include <chrono>
#include <cstdio>

#include "dtrain/checkpoint.h"

using namespace dtrain;

void add_checkpoint_options(CLI::App& app, CheckpointOptions& c) {
  app.add_option("--checkpoint-dir", c.dir, "directory of sharded checkpoints (step-N/ subdirectories)");
  app.add_option("--checkpoint-every", c.every, "save a checkpoint every N steps (0: never)")->capture_default_str();
  app.add_flag("--resume", c.resume, "resume from the newest complete checkpoint in --checkpoint-dir");
  app.add_option("--keep-last", c.keep_last, "keep only the newest K checkpoints (0: all)")->capture_default_str();
  app.add_option("--checkpoint-key-file", c.key_file,
                 "encrypt checkpoints with the 256-bit key in this file (64 hex digits; default: "
                 "DTRAIN_CHECKPOINT_KEY if set, else no encryption)");
  app.add_option("--stop-at", c.stop_at, "stop after this many steps, as a preempted job would (for testing resume)");
}

namespace {
std::map<std::string, int64_t> model_fields(const nn::GPTConfig& m) {
  return {{"n_layer", m.n_layer},
          {"n_head", m.n_head},
          {"n_embd", m.n_embd},
          {"vocab_size", m.vocab_size},
          {"max_seq_len", m.max_seq_len}};
}
}  // namespace

int64_t resume_from_checkpoint(const CheckpointOptions& c, Trainer& t, parallel::DataParallel& dp) {
  if (!c.resume) return 0;
  DTRAIN_CHECK(!c.dir.empty(), "--resume needs --checkpoint-dir");
  const bool lead = dp.rank() == 0;
  const std::string path = checkpoint::find_latest(c.dir);
  if (path.empty()) {
    if (lead) std::printf("resume: no complete checkpoint in %s, starting from step 0\n", c.dir.c_str());
    return 0;
  }
  const auto start = std::chrono::steady_clock::now();
  checkpoint::Reader reader(path, checkpoint::EncryptionKey::from_file_or_env(c.key_file));
  const checkpoint::Meta& m = reader.meta();
  const auto want = model_fields(t.model->config());
  DTRAIN_CHECK(m.model == want, "checkpoint ", path, " holds a different model (", m.model.at("n_layer"),
               " layers, width ", m.model.at("n_embd"), ") than this run's ", t.model->config().str(),
               "; pass the same model options");
  reader.load_parameters(*t.model);
  reader.load(checkpoint::owned_pieces(*t.model, *t.optimizer, dp.rank(), dp.world_size(), /*replicated=*/false));
  t.optimizer->set_steps_done(m.optimizer_steps);
  t.train_data->set_position(m.data);
  if (lead) {
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    std::printf("resume: loaded %s (step %lld, saved by %d rank(s) at ZeRO stage %d) in %.1f ms\n", path.c_str(),
                static_cast<long long>(m.step), m.world_size, m.zero_stage, ms);
  }
  return m.step;
}

void save_checkpoint(const CheckpointOptions& c, Trainer& t, parallel::DataParallel& dp, comm::Communicator& comm,
                     int64_t steps_done) {
  const auto start = std::chrono::steady_clock::now();
  dp.wait_for_parameters();
  checkpoint::Meta m;
  m.step = steps_done;
  m.world_size = dp.world_size();
  m.zero_stage = dp.options().stage;
  m.model = model_fields(t.model->config());
  m.optimizer = "adamw";
  m.hyper = {{"lr", t.opt.lr},
             {"min_lr_ratio", t.opt.min_lr_ratio},
             {"warmup_steps", static_cast<double>(t.schedule.warmup_steps)},
             {"total_steps", static_cast<double>(t.schedule.total_steps)},
             {"weight_decay", t.opt.weight_decay},
             {"grad_clip", t.opt.grad_clip},
             {"batch", static_cast<double>(t.opt.batch)},
             {"seq_len", static_cast<double>(t.opt.seq_len)}};
  m.optimizer_steps = t.optimizer->steps_done();
  m.schedule_step = steps_done;
  m.data = t.train_data->position();
  m.seed = t.opt.seed;
  const bool replicated = dp.options().stage == 0;
  const auto pieces = checkpoint::owned_pieces(*t.model, *t.optimizer, dp.rank(), dp.world_size(), replicated);
  checkpoint::SaveOptions so;
  so.keep_last = c.keep_last;
  so.key = checkpoint::EncryptionKey::from_file_or_env(c.key_file);
  const std::string path = checkpoint::save(c.dir, m, pieces, &comm, so);
  if (dp.rank() == 0) {
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    std::printf("checkpoint: saved %s%s in %.1f ms (training blocked for that long)\n", path.c_str(),
                so.key ? " (encrypted)" : "", ms);
    std::fflush(stdout);
  }
}
