// train_gpt: trains a GPT-2 family model on one process or many (CPU or GPUs).
//
//   train_gpt                                   # tiny preset, built-in additions, CPU
//   train_gpt --preset gpt2-124m --device cuda --data 'shards/train_*.bin' --batch 8 --seq-len 1024 --precision bf16
//   dtrain-run --nproc-per-node 2 train_gpt --zero 3
//
// Every run goes through the data-parallel engine (training.h): one loop for
// one rank and many.
//
// Data: omitted -> integer additions generated in memory (held-out sums are
// scored by greedy decoding); a text file -> byte tokens; a glob of llm.c
// token shards -> those. Prints one line per step; --metrics-out writes JSON Lines.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "training.h"

namespace {
void add_options(CLI::App& app, TrainOptions& o) {
  app.add_option("--preset", o.preset, "model preset: tiny, gpt2-124m, gpt2-350m")->capture_default_str();
  app.add_option("--n-layer", o.n_layer, "override the preset's number of blocks");
  app.add_option("--n-head", o.n_head, "override the preset's number of heads");
  app.add_option("--n-embd", o.n_embd, "override the preset's width");
  app.add_option("--vocab-size", o.vocab_size, "override the preset's vocabulary size");
  app.add_option("--max-seq-len", o.max_seq_len, "override the preset's context (position table rows)");
  app.add_flag("--checkpoint-activations", o.checkpoint_activations, "recompute each block's forward in backward");
  app.add_option("--recompute", o.recompute,
                 "0: keep activations; 1: recompute each MLP's GELU in backward; 2: also the layernorms")
      ->capture_default_str();
  app.add_option("--device", o.device, "cpu or cuda[:N]")->capture_default_str();
  app.add_option("--batch", o.batch, "global batch: sequences per step over all ranks")->capture_default_str();
  app.add_option("--seq-len", o.seq_len, "tokens per sequence")->capture_default_str();
  app.add_option("--steps", o.steps, "optimizer steps")->capture_default_str();
  app.add_option("--lr", o.lr, "peak learning rate (cosine decay after warm-up)")->capture_default_str();
  app.add_option("--warmup", o.warmup_steps, "warm-up steps")->capture_default_str();
  app.add_option("--weight-decay", o.weight_decay, "AdamW weight decay on matrices")->capture_default_str();
  app.add_option("--grad-clip", o.grad_clip, "clip the global gradient norm to this (0: off)")->capture_default_str();
  app.add_option("--seed", o.seed, "seed for weights and built-in data")->capture_default_str();
  app.add_option("--data", o.data, "text file or glob of token shards (omitted: built-in additions)");
  app.add_option("--val-data", o.val_data, "held-out text file or shards");
  app.add_option("--digits", o.addition_digits, "operand digits of the built-in additions")->capture_default_str();
  app.add_option("--eval-every", o.eval_every, "evaluate every N steps (0: at the end only)")->capture_default_str();
  app.add_option("--eval-problems", o.eval_problems, "held-out sums scored per evaluation")->capture_default_str();
  app.add_option("--eval-batches", o.eval_batches, "validation batches per evaluation")->capture_default_str();
  app.add_option("--metrics-out", o.metrics_out, "write JSON Lines metrics to this file");
  app.add_option("--sample-tokens", o.sample_tokens, "tokens to sample at the end (0: none)")->capture_default_str();
  app.add_option("--temperature", o.temperature, "sampling temperature (0: greedy)")->capture_default_str();
  app.add_option("--prompt", o.sample_prompt, "prompt of the final sample")->capture_default_str();
}

}  // namespace

// Only option setup runs outside the try below; what it can throw (bad_alloc) may end the program.
int main(int argc, char** argv) {  // NOLINT(bugprone-exception-escape)
  CLI::App app{"train_gpt: train a GPT-2 family model with dtrain"};
  TrainOptions opt;
  add_options(app, opt);
  EngineOptions engine;  // data-parallel engine options (training.h)
  add_engine_options(app, engine);
  CheckpointOptions ckpt;  // checkpoint options (checkpointing.h)
  add_checkpoint_options(app, ckpt);
  CLI11_PARSE(app, argc, argv);
  try {
    return run_training(opt, engine, ckpt);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train_gpt: error: %s\n", e.what());
    return 1;
  }
}
