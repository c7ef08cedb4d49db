#include "trainer.h"

#include <cstdio>
#include <fstream>

#include "dtrain/data/byte_tokenizer.h"

using namespace dtrain;

nn::GPTConfig make_config(const TrainOptions& opt) {
  nn::GPTConfig c = nn::GPTConfig::preset(opt.preset);
  if (opt.n_layer) c.n_layer = opt.n_layer;
  if (opt.n_head) c.n_head = opt.n_head;
  if (opt.n_embd) c.n_embd = opt.n_embd;
  if (opt.vocab_size) c.vocab_size = opt.vocab_size;
  if (opt.max_seq_len) c.max_seq_len = opt.max_seq_len;
  c.checkpoint_activations = opt.checkpoint_activations;
  c.recompute = opt.recompute;
  c.param_dtype = opt.dtype;
  c.compute_dtype = opt.dtype;
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

void make_schedule(Trainer& t) {
  t.schedule.max_lr = t.opt.lr;
  t.schedule.min_lr = t.opt.lr * t.opt.min_lr_ratio;
  t.schedule.warmup_steps = std::min(t.opt.warmup_steps, t.opt.steps / 2);
  t.schedule.total_steps = t.opt.steps;
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
