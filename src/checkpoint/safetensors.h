// The safetensors file format (https://huggingface.co/docs/safetensors):
// 8 bytes little-endian header length N, N bytes of JSON
//   {"<name>": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ...,
//    "__metadata__": {"<key>": "<string>", ...}}
// then the data; offsets are relative to the first byte after the header.
//
// The parser treats the file as hostile: header size capped, JSON parse
// errors caught, every dtype known, shapes non-negative and overflow-free,
// every byte range inside the data and matching its shape, no two ranges
// overlapping. Errors are dtrain::Error naming the file and the problem.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "dtrain/checkpoint.h"

namespace dtrain::checkpoint::st {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

struct Entry {
  std::string name;
  std::string dtype;  // "F32", "BF16", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets relative to the data start
};

struct Header {
  std::vector<Entry> entries;  // in file order of their data
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  // 8 + N
  const Entry* find(const std::string& name) const;
};

// Bytes per element of a safetensors dtype name; 0 if unknown.
size_t dtype_bytes(const std::string& dtype);

// Parses the JSON header text; data_size = file size - 8 - header length.
Header parse_header(const char* json, size_t n, uint64_t data_size, const std::string& file);

// Reads and parses the header of a file (decrypting it with key when given).
Header read_header(const std::string& path, KeyPtr key = nullptr);

// Builds the header bytes (length prefix + JSON padded with spaces to a
// multiple of 8) for entries whose data will follow back to back in order;
// fills their begin/end.
std::string build_header(std::vector<Entry>& entries, const std::map<std::string, std::string>& metadata);

}  // namespace dtrain::checkpoint::st
