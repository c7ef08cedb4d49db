// Byte-level tokenizer: token = byte value (vocabulary 256). Any text (or
// binary) file becomes tokens without a vocabulary file, which suits the tiny
// preset and the built-in dataset.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dtrain::data {

constexpr int64_t kByteVocabSize = 256;

std::vector<uint16_t> encode_bytes(const std::string& text);
std::vector<int32_t> encode_bytes_i32(const std::string& text);
// Tokens outside [0, 256) become '?'.
std::string decode_bytes(const std::vector<int32_t>& tokens);
// Reads a whole file; throws naming the path when it cannot.
std::string read_text_file(const std::string& path);
// Tokenizes `text_path` into shards "<out_prefix>_000000.bin", ... of at most
// tokens_per_shard tokens each (atomic writes). Returns the paths written.
std::vector<std::string> tokenize_file_to_shards(const std::string& text_path, const std::string& out_prefix,
                                                 int64_t tokens_per_shard);

}  // namespace dtrain::data
