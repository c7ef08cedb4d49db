#include "trainer.h"

#include <chrono>
#include <cstdio>
#include <fstream>

#include "dtrain/data/byte_tokenizer.h"
#include "dtrain/optim/clip.h"

using namespace dtrain;

nn::GPTConfig make_config(const TrainOptions& opt) {
  nn::GPTConfig c = nn::GPTConfig::preset(opt.preset);
  if (opt.n_layer) c.n_layer = opt.n_layer;
  if (opt.n_head) c.n_head = opt.n_head;
  if (opt.n_embd) c.n_embd = opt.n_embd;
  if (opt.vocab_size) c.vocab_size = opt.vocab_size;
  if (opt.max_seq_len) c.max_seq_len = opt.max_seq_len;
  c.checkpoint_activations = opt.checkpoint_activations;
  c.validate();
  DTRAIN_CHECK(opt.seq_len <= c.max_seq_len, "--seq-len ", opt.seq_len, " is longer than the model's position table (",
               c.max_seq_len, "); lower --seq-len or raise --max-seq-len");
  return c;
}

namespace {
bool is_token_shard(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  int32_t magic = 0;
  in.read(reinterpret_cast<char*>(&magic), sizeof(magic));
  return in.gcount() == sizeof(magic) && magic == data::kShardMagic;
}

// A path that is not a shard is read as text and byte-tokenized; a glob or a
// shard path is read as llm.c shards.
std::vector<std::shared_ptr<data::TokenSource>> open_sources(const std::string& spec) {
  std::vector<std::shared_ptr<data::TokenSource>> out;
  const auto paths = data::glob_paths(spec);
  for (auto& p : paths) {
    if (is_token_shard(p)) {
      out.push_back(std::make_shared<data::ShardFile>(p));
    } else {
      auto tokens = data::encode_bytes(data::read_text_file(p));
      DTRAIN_CHECK(!tokens.empty(), "data file ", p, " is empty");
      out.push_back(std::make_shared<data::MemoryTokens>(std::move(tokens), p));
    }
  }
  return out;
}

std::unique_ptr<data::DataLoader> loader(std::vector<std::shared_ptr<data::TokenSource>> s, const TrainOptions& o) {
  return std::make_unique<data::DataLoader>(std::move(s), o.batch, o.seq_len, o.rank, o.world_size);
}
}  // namespace

void make_data(Trainer& t) {
  const TrainOptions& o = t.opt;
  if (o.data.empty()) {
    // Built-in additions: enough problems that a run sees each few times at most.
    t.additions.emplace(o.addition_digits);
    if (o.seq_len % t.additions->line_length() != 0) {
      std::printf(
          "note: --seq-len %lld is not a multiple of the %lld-character lines; rows will start mid-line, "
          "which makes the sums much slower to learn\n",
          static_cast<long long>(o.seq_len), static_cast<long long>(t.additions->line_length()));
    }
    const int64_t tokens_needed = o.steps * o.batch * o.seq_len + o.batch * o.seq_len + 1;
    const int64_t problems = std::max<int64_t>(20000, std::min<int64_t>(tokens_needed / 8, 500000));
    auto train =
        std::make_shared<data::MemoryTokens>(t.additions->train_tokens(problems, o.seed), "built-in additions");
    auto val = std::make_shared<data::MemoryTokens>(t.additions->held_out_tokens(4000, o.seed + 1),
                                                    "built-in additions (held out)");
    t.train_data = loader({train}, o);
    t.val_data = loader({val}, o);
    return;
  }
  auto sources = open_sources(o.data);
  if (!o.val_data.empty()) {
    t.val_data = loader(open_sources(o.val_data), o);
  } else if (sources.size() == 1 && dynamic_cast<data::MemoryTokens*>(sources[0].get())) {
    // One text file: hold out its last tenth for validation.
    const auto& all = *sources[0];
    const int64_t n_val = all.size() / 10;
    std::vector<uint16_t> tokens(static_cast<size_t>(all.size()));
    all.read(0, all.size(), tokens.data());
    const std::string name = all.describe();
    if (n_val >= o.batch * o.seq_len + 1) {
      t.val_data = loader({std::make_shared<data::MemoryTokens>(
                              std::vector<uint16_t>(tokens.end() - n_val, tokens.end()), name + " (last 10%)")},
                          o);
      tokens.resize(tokens.size() - static_cast<size_t>(n_val));
    }
    sources[0] = std::make_shared<data::MemoryTokens>(std::move(tokens), name);
  }
  t.train_data = loader(std::move(sources), o);
}

void make_model(Trainer& t) {
  t.device = Device::parse(t.opt.device);
  check_device_available(t.device);
  const nn::GPTConfig config = make_config(t.opt);
  if (t.opt.data.empty()) {
    DTRAIN_CHECK(config.vocab_size >= data::kByteVocabSize,
                 "the built-in data uses byte tokens (256) but the model's "
                 "vocabulary is ",
                 config.vocab_size, "; use --vocab-size 256 or more");
  }
  t.model = std::make_unique<nn::GPT>(config, t.device, t.opt.seed);
}

void make_optimizer(Trainer& t) {
  t.optimizer = std::make_unique<optim::AdamW>(optim::param_groups(*t.model, t.opt.weight_decay));
  t.schedule.max_lr = t.opt.lr;
  t.schedule.min_lr = t.opt.lr * t.opt.min_lr_ratio;
  t.schedule.warmup_steps = std::min(t.opt.warmup_steps, t.opt.steps / 2);
  t.schedule.total_steps = t.opt.steps;
}

StepStats train_step(Trainer& t, int64_t step) {
  const auto start = std::chrono::steady_clock::now();
  const data::Batch& batch = t.train_data->next();
  StepStats s;
  t.model->zero_grad();
  s.loss = t.model->forward(batch.inputs, batch.targets);
  t.model->backward();
  s.grad_norm = optim::grad_norm(t.optimizer->grads());
  s.lr = t.schedule.lr(step);
  t.optimizer->step(s.lr, optim::clip_scale(s.grad_norm, t.opt.grad_clip));
  s.step_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  s.tokens_per_s = static_cast<double>(batch.inputs.numel()) / (s.step_ms / 1000.0);
  return s;
}

EvalResult evaluate(Trainer& t) {
  EvalResult r;
  if (t.val_data) {
    t.val_data->set_position({});
    double sum = 0.0;
    const int64_t n = std::max<int64_t>(1, std::min(t.opt.eval_batches, t.val_data->batches_per_epoch()));
    for (int64_t i = 0; i < n; ++i) {
      const data::Batch& b = t.val_data->next();
      sum += t.model->forward(b.inputs, b.targets);
    }
    r.val_loss = sum / static_cast<double>(n);
  }
  if (t.additions) {
    const auto pairs = t.additions->held_out(t.opt.eval_problems, 7);
    nn::GPT& model = *t.model;
    r.baseline = t.additions->baseline(pairs);
    r.addition = t.additions->evaluate(pairs, [&](const std::vector<std::vector<int32_t>>& prompts, int64_t max_new) {
      std::vector<std::vector<int32_t>> out;
      for (size_t i = 0; i < prompts.size(); i += 64) {  // chunks bound the activation memory
        std::vector<std::vector<int32_t>> chunk(
            prompts.begin() + static_cast<std::ptrdiff_t>(i),
            prompts.begin() + static_cast<std::ptrdiff_t>(std::min(prompts.size(), i + 64)));
        for (auto& o : nn::generate_greedy_batch(model, chunk, max_new, '\n')) out.push_back(std::move(o));
      }
      return out;
    });
  }
  return r;
}

namespace {
void print_eval(int64_t step, const EvalResult& e, nlohmann::json& record) {
  std::printf("eval @ step %lld:", static_cast<long long>(step));
  if (e.val_loss >= 0) {
    std::printf(" val loss %.4f", e.val_loss);
    record["val_loss"] = e.val_loss;
  }
  if (e.addition) {
    std::printf(" | held-out sums: exact %.1f%%, digits %.1f%% (format-only baseline %.1f%%)",
                100.0 * e.addition->exact, 100.0 * e.addition->digits, 100.0 * e.baseline->digits);
    record["accuracy_exact"] = e.addition->exact;
    record["accuracy_digits"] = e.addition->digits;
    record["baseline_digits"] = e.baseline->digits;
  }
  std::printf("\n");
}
}  // namespace

void train_loop(Trainer& t, MetricsWriter& metrics) {
  const int64_t steps = t.opt.steps;
  double total_ms = 0.0, total_tokens = 0.0;
  float last_loss = 0.0f;
  EvalResult last_eval;
  for (int64_t step = 0; step < steps; ++step) {
    const StepStats s = train_step(t, step);
    last_loss = s.loss;
    if (step > 0) {  // the first step allocates; leave it out of the average
      total_ms += s.step_ms;
      total_tokens += static_cast<double>(t.train_data->local_batch() * t.opt.seq_len);
    }
    std::printf("step %5lld/%lld | loss %.4f | lr %.2e | norm %.3f | %7.1f ms | %9.0f tok/s\n",
                static_cast<long long>(step) + 1, static_cast<long long>(steps), s.loss, s.lr, s.grad_norm, s.step_ms,
                s.tokens_per_s);
    nlohmann::json record = {{"step", step + 1},     {"loss", s.loss}, {"tokens_per_s", s.tokens_per_s},
                             {"step_ms", s.step_ms}, {"lr", s.lr},     {"grad_norm", s.grad_norm}};
    const bool last = step + 1 == steps;
    if ((t.opt.eval_every > 0 && (step + 1) % t.opt.eval_every == 0) || last) {
      last_eval = evaluate(t);
      print_eval(step + 1, last_eval, record);
    }
    std::fflush(stdout);
    metrics.write(record);
  }
  nlohmann::json summary = {{"final", true},
                            {"steps", steps},
                            {"final_loss", last_loss},
                            {"tokens_per_s", total_ms > 0 ? total_tokens / (total_ms / 1000.0) : 0.0},
                            {"parameters", t.model->num_parameters()},
                            {"config", t.model->config().str()}};
  const EvalResult& e = last_eval;
  if (e.val_loss >= 0) summary["val_loss"] = e.val_loss;
  if (e.addition) {
    summary["accuracy_exact"] = e.addition->exact;
    summary["accuracy_digits"] = e.addition->digits;
    summary["baseline_digits"] = e.baseline->digits;
  }
  metrics.write(summary);
}
