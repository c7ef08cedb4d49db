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
#include <string>

#include "dtrain/comm/communicator.h"
#include "dtrain/parallel/data_parallel.h"
#include "trainer.h"

struct CheckpointOptions {
  std::string dir;       // empty: no checkpoints
  int64_t every = 0;     // save every N steps (0: only with --stop-at)
  bool resume = false;   // start from the newest complete checkpoint in dir
  int keep_last = 0;     // > 0: keep only the newest K
  int64_t stop_at = -1;  // >= 0: exit after this many steps as if preempted
  std::string key_file;  // encryption key (else DTRAIN_CHECKPOINT_KEY; neither: plain files)
};

void add_checkpoint_options(CLI::App& app, CheckpointOptions& c);

// Loads the newest complete checkpoint when --resume is given; returns the
// step to start from (0 without one).
int64_t resume_from_checkpoint(const CheckpointOptions& c, Trainer& t, dtrain::parallel::DataParallel& dp);

// Saves a checkpoint after `steps_done` steps (collective).
void save_checkpoint(const CheckpointOptions& c, Trainer& t, dtrain::parallel::DataParallel& dp,
                     dtrain::comm::Communicator& comm, int64_t steps_done);
