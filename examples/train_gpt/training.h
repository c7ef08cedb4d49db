// train_gpt's one training loop: every run, one process or many, goes
// through the data-parallel engine (parallel::DataParallel), so precision,
// gradient accumulation, clipping and loss scaling have one home (the
// engine's step). Without a launcher the engine runs at world size 1 over
// Communicator::single_process() (no store, no network, no communication).
//
//   train_gpt --batch 16                                   # one process
//   train_gpt --precision bf16                             # bf16 model, f32 master weights
//   dtrain-run --nproc-per-node 2 train_gpt --zero 3 --batch 16
//
// The global batch (--batch) does not depend on the world size: each rank
// runs --batch / world / --grad-accum sequences per micro-step. Rank 0 prints
// the step lines (loss averaged over ranks, step time and peak memory of the
// slowest / largest rank) and writes --metrics-out; every record carries the
// per-rank step times and peak memory, and the final summary the measured
// and predicted model-state bytes per rank and the start-up peak (the
// allocator's peak before the first step; under --zero 3 the model is built
// deferred, so the engine fills each rank's shards and no rank holds it whole).
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "checkpointing.h"
#include "trainer.h"

struct EngineOptions {
  int zero = -1;       // ZeRO stage; -1: not given (stage 0)
  int grad_accum = 1;  // micro-steps per optimizer step
  std::string precision = "f32";
  bool dry_run = false;  // print the data-parallel plan and the memory ledger, do not train
  double first_bucket_mb = 1.0;
  double bucket_mb = 25.0;
  int prefetch = 1;
  bool no_overlap = false;
  std::string trace_out;  // write the engine's trace (JSON Lines) of rank 0 here

  int loss_scale_window = 2000;  // f16: good steps before the loss scale doubles
};

void add_engine_options(CLI::App& app, EngineOptions& e);
// Builds data, model, engine and optimizer, trains, evaluates, samples.
// Returns the process exit code.
int run_training(const TrainOptions& opt, const EngineOptions& e, const CheckpointOptions& c = {});
