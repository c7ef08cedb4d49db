// train_gpt's checkpoint options and the glue between the training loop and
// dtrain::checkpoint: what goes into the manifest (model config, step,
// optimizer and schedule state, data position, seed), resuming from the
// newest complete checkpoint, and periodic saves.
//
//   train_gpt --checkpoint-dir ckpt --checkpoint-every 100 --keep-last 3
//   train_gpt --checkpoint-dir ckpt --resume        # continue where it stopped
//   DTRAIN_CHECKPOINT_KEY=$(dtrain-ckpt keygen) train_gpt --checkpoint-dir ckpt ...   # encrypted at rest
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <memory>
#include <string>

#include "dtrain/checkpoint.h"
#include "dtrain/comm/communicator.h"
#include "dtrain/parallel/data_parallel.h"
#include "trainer.h"

struct CheckpointOptions {
  std::string dir;        // empty: no checkpoints
  int64_t every = 0;      // save every N steps (0: only with --stop-at)
  bool resume = false;    // start from the newest complete checkpoint in dir
  int keep_last = 0;      // > 0: keep only the newest K
  int64_t stop_at = -1;   // >= 0: exit after this many steps as if preempted
  std::string key_file;   // encryption key (else DTRAIN_CHECKPOINT_KEY; neither: plain files)
  std::string init_from;  // a Hugging Face GPT-2 safetensors file to start from
};

void add_checkpoint_options(CLI::App& app, CheckpointOptions& c);

// --init-from: fills the (not yet wrapped) model from a Hugging Face GPT-2
// safetensors file; nothing without the option.
void init_from_pretrained(const CheckpointOptions& c, Trainer& t);

// Checkpoints of one training run. Saves overlap training: a save begun after
// step N (snapshot to host, file written on a background thread) is
// published after step N + 1, or before the program exits. With
// --checkpoint-dir, SIGTERM is caught: the ranks agree on it at the next step
// end (one tiny all-reduce per step), save an emergency checkpoint and stop.
class Checkpointer {
 public:
  Checkpointer(const CheckpointOptions& c, Trainer& t, dtrain::parallel::DataParallel& dp,
               dtrain::comm::Communicator& comm);
  ~Checkpointer();
  // Loads the newest complete checkpoint when --resume is given; returns the
  // step to start from (0 without one).
  int64_t resume();
  // After `steps_done` steps (collective): publishes the save begun at the
  // previous step, then begins one when it is due (or `force`). Returns true
  // when any rank received SIGTERM (a preemption notice): an emergency
  // checkpoint has then been saved and published, and the run should stop.
  bool after_step(int64_t steps_done, bool force = false);
  // Publishes what is pending (collective); call before exiting.
  void finish();

 private:
  void publish();
  CheckpointOptions c_;
  Trainer& t_;
  dtrain::parallel::DataParallel& dp_;
  dtrain::comm::Communicator& comm_;
  dtrain::checkpoint::KeyPtr key_;
  std::unique_ptr<dtrain::checkpoint::PendingSave> pending_;
  double begin_ms_ = 0;
};
