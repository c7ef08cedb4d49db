// train_gpt's data-parallel path: --zero {0,1,2,3}, --grad-accum, --precision,
// --dry-run, and any world size under dtrain-run (or torchrun / srun / mpirun).
//
//   dtrain-run --nproc-per-node 2 train_gpt --zero 3 --batch 16
//
// The global batch (--batch) does not depend on the world size: each rank
// runs --batch / world / --grad-accum sequences per micro-step. Rank 0 prints
// the step lines (loss averaged over ranks, step time and peak memory of the
// slowest / largest rank) and writes --metrics-out; every record carries the
// per-rank step times and peak memory, and the final summary the measured
// and predicted model-state bytes per rank.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "checkpointing.h"
#include "trainer.h"

struct DistributedOptions {
  int zero = -1;       // ZeRO stage; -1: not given
  int grad_accum = 1;  // micro-steps per optimizer step
  std::string precision = "f32";
  bool dry_run = false;  // print the plan and the memory ledger, do not train
  double first_bucket_mb = 1.0;
  double bucket_mb = 25.0;
  int prefetch = 1;
  bool no_overlap = false;
  std::string trace_out;  // write the engine's trace (JSON Lines) of rank 0 here
};

void add_distributed_options(CLI::App& app, DistributedOptions& d);
// True when the run goes through the data-parallel engine: any of the options
// above given, or a launcher's WORLD_SIZE in the environment.
bool wants_distributed(const DistributedOptions& d);
// Builds data, model, engine and optimizer, trains, evaluates, samples.
// Returns the process exit code.
int run_distributed(const TrainOptions& opt, const DistributedOptions& d, const CheckpointOptions& c = {});
