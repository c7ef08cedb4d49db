// dtrain_tokenize: turns a text file into byte-level token shards that
// train_gpt --data reads ("<prefix>_000000.bin", ...).
#include <CLI/CLI.hpp>
#include <cstdio>

#include "dtrain/data/byte_tokenizer.h"

// Only option setup runs outside the try below; what it can throw (bad_alloc) may end the program.
int main(int argc, char** argv) {  // NOLINT(bugprone-exception-escape)
  CLI::App app{"dtrain_tokenize: text file -> byte-level token shards (llm.c format)"};
  std::string input, prefix;
  int64_t tokens_per_shard = 100'000'000;
  app.add_option("input", input, "text file")->required();
  app.add_option("prefix", prefix, "output prefix, e.g. data/train")->required();
  app.add_option("--tokens-per-shard", tokens_per_shard, "maximum tokens per shard")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    for (auto& p : dtrain::data::tokenize_file_to_shards(input, prefix, tokens_per_shard))
      std::printf("%s\n", p.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dtrain_tokenize: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
