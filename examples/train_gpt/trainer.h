// train_gpt's pieces: options, construction of data / model / optimizer, and
// evaluation. The loop itself is training.h's, around the data-parallel
// engine, which wraps the model and rebuilds the optimizer on its shards.
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

struct TrainOptions {
  std::string preset = "tiny";
  int64_t n_layer = 0, n_head = 0, n_embd = 0, vocab_size = 0, max_seq_len = 0;  // 0: from the preset
  bool checkpoint_activations = false;
  int recompute = 0;  // GPTConfig::recompute (1: the MLP's GELU in backward)
  // The model's parameter and compute dtype (from --precision; the f32 master
  // weights and moments of a bf16/f16 model live in the engine).
  dtrain::DType dtype = dtrain::DType::f32;
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
// The learning-rate schedule. The optimizer is the engine's business: it is
// built over the engine's f32 master shards (training.cpp).
void make_schedule(Trainer& t);

EvalResult evaluate(Trainer& t);
