// train_gpt's pieces: options, construction of data / model / optimizer, and
// the training loop. Construction is kept apart from the loop so that a
// data-parallel engine can wrap the model and optimizer between the two.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "dtrain/data/addition_dataset.h"
#include "dtrain/data/data_loader.h"
#include "dtrain/nn/gpt.h"
#include "dtrain/optim/adamw.h"
#include "dtrain/optim/schedule.h"
#include "metrics_writer.h"

struct TrainOptions {
  std::string preset = "tiny";
  int64_t n_layer = 0, n_head = 0, n_embd = 0, vocab_size = 0, max_seq_len = 0;  // 0: from the preset
  bool checkpoint_activations = false;
  std::string device = "cpu";
  int64_t batch = 16;    // global batch (sequences per step over all ranks)
  int64_t seq_len = 60;  // a multiple of the built-in data's 10-character lines
  int64_t steps = 1500;
  float lr = 3e-3f;
  float min_lr_ratio = 0.1f;
  int64_t warmup_steps = 20;
  float weight_decay = 0.1f;
  float grad_clip = 1.0f;
  uint64_t seed = 1337;
  std::string data;      // empty: the built-in additions
  std::string val_data;  // optional held-out shards / text
  int addition_digits = 2;
  int64_t eval_every = 250;  // 0: only at the end
  int64_t eval_batches = 4;
  int64_t eval_problems = 200;
  std::string metrics_out;
  int64_t sample_tokens = 48;
  float temperature = 0.0f;              // <= 0: greedy
  std::string sample_prompt = "12+34=";  // a held-out-style prompt of the built-in data
  int64_t rank = 0, world_size = 1;      // this rank's share of every global batch
};

struct EvalResult {
  double val_loss = -1.0;
  std::optional<dtrain::data::AdditionDataset::Score> addition;
  std::optional<dtrain::data::AdditionDataset::Score> baseline;  // format-only score
};

// Everything a training run holds.
struct Trainer {
  TrainOptions opt;
  dtrain::Device device;
  std::unique_ptr<dtrain::data::DataLoader> train_data;
  std::unique_ptr<dtrain::data::DataLoader> val_data;      // may be null
  std::optional<dtrain::data::AdditionDataset> additions;  // set for the built-in data
  std::unique_ptr<dtrain::nn::GPT> model;
  std::unique_ptr<dtrain::optim::Optimizer> optimizer;
  dtrain::optim::CosineSchedule schedule;
};

dtrain::nn::GPTConfig make_config(const TrainOptions& opt);
void make_data(Trainer& t);
void make_model(Trainer& t);
void make_optimizer(Trainer& t);

struct StepStats {
  float loss = 0.0f;
  float grad_norm = 0.0f;
  float lr = 0.0f;
  double step_ms = 0.0;
  double tokens_per_s = 0.0;
};
// One optimizer step on the next global batch (this rank's share).
StepStats train_step(Trainer& t, int64_t step);
EvalResult evaluate(Trainer& t);
// Runs opt.steps steps, printing a line per step and writing metrics.
void train_loop(Trainer& t, MetricsWriter& metrics);
