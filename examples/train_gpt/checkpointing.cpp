// train_gpt's checkpoint glue (see checkpointing.h): what a resumed run needs
// besides the tensors goes into the manifest here, saves are begun and
// published at step boundaries, and SIGTERM becomes an emergency checkpoint.
#include "checkpointing.h"

#include <signal.h>

#include <chrono>
#include <csignal>
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
  app.add_option("--init-from", c.init_from,
                 "start from the weights in this Hugging Face GPT-2 safetensors file (e.g. from dtrain-ckpt export)");
  app.add_option("--stop-at", c.stop_at, "stop after this many steps, as a preempted job would (for testing resume)");
}

namespace {
volatile std::sig_atomic_t g_sigterm = 0;
void on_sigterm(int) {
  g_sigterm = 1;
}

std::map<std::string, int64_t> model_fields(const nn::GPTConfig& m) {
  return {{"n_layer", m.n_layer},
          {"n_head", m.n_head},
          {"n_embd", m.n_embd},
          {"vocab_size", m.vocab_size},
          {"max_seq_len", m.max_seq_len}};
}
}  // namespace

void init_from_pretrained(const CheckpointOptions& c, Trainer& t) {
  if (c.init_from.empty()) return;
  checkpoint::import_hf_gpt2(c.init_from, *t.model);
  if (t.opt.rank == 0) std::printf("init: weights from %s\n", c.init_from.c_str());
}

Checkpointer::Checkpointer(const CheckpointOptions& c, Trainer& t, parallel::DataParallel& dp, comm::Communicator& comm)
    : c_(c), t_(t), dp_(dp), comm_(comm) {
  if (!c_.dir.empty() || c_.resume) key_ = checkpoint::EncryptionKey::from_file_or_env(c_.key_file);
  if (!c_.dir.empty()) {
    struct sigaction sa {};
    sa.sa_handler = on_sigterm;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;  // blocking calls in communication continue; the flag is read at the step end
    ::sigaction(SIGTERM, &sa, nullptr);
  }
}

Checkpointer::~Checkpointer() = default;

int64_t Checkpointer::resume() {
  if (!c_.resume) return 0;
  DTRAIN_CHECK(!c_.dir.empty(), "--resume needs --checkpoint-dir");
  const bool lead = dp_.rank() == 0;
  const std::string path = checkpoint::find_latest(c_.dir);
  if (path.empty()) {
    if (lead) std::printf("resume: no complete checkpoint in %s, starting from step 0\n", c_.dir.c_str());
    return 0;
  }
  const auto start = std::chrono::steady_clock::now();
  checkpoint::Reader reader(path, key_);
  const checkpoint::Meta& m = reader.meta();
  const auto want = model_fields(t_.model->config());
  DTRAIN_CHECK(m.model == want, "checkpoint ", path, " holds a different model (", m.model.at("n_layer"),
               " layers, width ", m.model.at("n_embd"), ") than this run's ", t_.model->config().str(),
               "; pass the same model options");
  // f32 masters and moments, parameters derived from them, f16 loss scaler.
  const std::string precision_note = checkpoint::resume_engine(reader, *t_.model, *t_.optimizer, dp_);
  if (lead && !precision_note.empty()) std::printf("resume: %s\n", precision_note.c_str());
  t_.train_data->set_position(m.data);
  if (lead) {
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    std::printf("resume: loaded %s (step %lld, saved by %d rank(s) at ZeRO stage %d) in %.1f ms\n", path.c_str(),
                static_cast<long long>(m.step), m.world_size, m.zero_stage, ms);
  }
  return m.step;
}

bool Checkpointer::after_step(int64_t steps_done, bool force) {
  if (c_.dir.empty()) return false;
  publish();
  Tensor flag = Tensor::from_vector({g_sigterm != 0 ? 1.0f : 0.0f}, {1});
  if (dp_.world_size() > 1) comm_.all_reduce(flag, comm::ReduceOp::max).wait();
  const bool preempted = flag.item(0) > 0;
  if (!force && !preempted && !(c_.every > 0 && steps_done % c_.every == 0)) return false;
  const auto start = std::chrono::steady_clock::now();
  dp_.wait_for_parameters();
  checkpoint::Meta m;
  m.step = steps_done;
  m.world_size = dp_.world_size();
  m.zero_stage = dp_.options().stage;
  m.model = model_fields(t_.model->config());
  m.optimizer = "adamw";
  m.hyper = {{"lr", t_.opt.lr},
             {"min_lr_ratio", t_.opt.min_lr_ratio},
             {"warmup_steps", static_cast<double>(t_.schedule.warmup_steps)},
             {"total_steps", static_cast<double>(t_.schedule.total_steps)},
             {"weight_decay", t_.opt.weight_decay},
             {"grad_clip", t_.opt.grad_clip},
             {"batch", static_cast<double>(t_.opt.batch)},
             {"seq_len", static_cast<double>(t_.opt.seq_len)}};
  m.optimizer_steps = t_.optimizer->steps_done();
  m.schedule_step = steps_done;
  m.data = t_.train_data->position();
  m.seed = t_.opt.seed;
  checkpoint::record_engine_state(dp_, m);  // parameter dtype, f16 loss scaler
  const bool replicated = dp_.options().stage == 0;
  checkpoint::SaveOptions so;
  so.keep_last = c_.keep_last;
  so.key = key_;
  pending_ = std::make_unique<checkpoint::PendingSave>(
      c_.dir, m, checkpoint::owned_pieces(*t_.model, *t_.optimizer, dp_.rank(), dp_.world_size(), replicated), &comm_,
      so);
  begin_ms_ = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  if (preempted) {
    publish();
    if (dp_.rank() == 0) {
      std::printf("SIGTERM: emergency checkpoint saved after step %lld; stopping\n",
                  static_cast<long long>(steps_done));
      std::fflush(stdout);
    }
  }
  return preempted;
}

void Checkpointer::publish() {
  if (!pending_) return;
  const auto start = std::chrono::steady_clock::now();
  const std::string path = pending_->finish();
  pending_.reset();
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  if (dp_.rank() == 0) {
    std::printf("checkpoint: saved %s%s; training blocked %.1f ms (snapshot %.1f ms + publish %.1f ms)\n", path.c_str(),
                key_ ? " (encrypted)" : "", begin_ms_ + ms, begin_ms_, ms);
    std::fflush(stdout);
  }
}

void Checkpointer::finish() {
  publish();
}
