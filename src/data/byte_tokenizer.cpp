#include "dtrain/data/byte_tokenizer.h"

#include <cstdio>
#include <fstream>
#include <sstream>

#include "dtrain/data/token_shard.h"
#include "dtrain/error.h"

namespace dtrain::data {

std::vector<uint16_t> encode_bytes(const std::string& text) {
  std::vector<uint16_t> out(text.size());
  for (size_t i = 0; i < text.size(); ++i) out[i] = static_cast<unsigned char>(text[i]);
  return out;
}

std::vector<int32_t> encode_bytes_i32(const std::string& text) {
  std::vector<int32_t> out(text.size());
  for (size_t i = 0; i < text.size(); ++i) out[i] = static_cast<unsigned char>(text[i]);
  return out;
}

std::string decode_bytes(const std::vector<int32_t>& tokens) {
  std::string out;
  out.reserve(tokens.size());
  for (int32_t t : tokens) out.push_back(t >= 0 && t < kByteVocabSize ? static_cast<char>(t) : '?');
  return out;
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  DTRAIN_CHECK(in.good(), "cannot open text file ", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  DTRAIN_CHECK(!in.bad(), "error while reading ", path);
  return ss.str();
}

std::vector<std::string> tokenize_file_to_shards(const std::string& text_path, const std::string& out_prefix,
                                                 int64_t tokens_per_shard) {
  DTRAIN_CHECK(tokens_per_shard > 0, "tokens_per_shard must be positive, got ", tokens_per_shard);
  const std::vector<uint16_t> tokens = encode_bytes(read_text_file(text_path));
  DTRAIN_CHECK(!tokens.empty(), "text file ", text_path, " is empty; there is nothing to tokenize");
  std::vector<std::string> paths;
  for (size_t start = 0; start < tokens.size(); start += static_cast<size_t>(tokens_per_shard)) {
    const size_t end = std::min(tokens.size(), start + static_cast<size_t>(tokens_per_shard));
    char suffix[32];
    std::snprintf(suffix, sizeof(suffix), "_%06zu.bin", paths.size());
    paths.push_back(out_prefix + suffix);
    write_token_shard(paths.back(), std::vector<uint16_t>(tokens.begin() + start, tokens.begin() + end));
  }
  return paths;
}

}  // namespace dtrain::data
