// safetensors header parsing (hardened against hostile files) and building.
// See safetensors.h for the format and the checks.
#include "checkpoint/safetensors.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "checkpoint/file_io.h"
#include "dtrain/error.h"

namespace dtrain::checkpoint::st {

using nlohmann::json;

const Entry* Header::find(const std::string& name) const {
  for (const auto& e : entries) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

size_t dtype_bytes(const std::string& d) {
  static const std::map<std::string, size_t> sizes = {{"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8},
                                                      {"I32", 4}, {"I16", 2}, {"I8", 1},  {"U8", 1},   {"U16", 2},
                                                      {"U32", 4}, {"U64", 8}, {"BOOL", 1}};
  auto it = sizes.find(d);
  return it == sizes.end() ? 0 : it->second;
}

Header parse_header(const char* text, size_t n, uint64_t data_size, const std::string& file) {
  auto fail = [&](const std::string& what) {
    DTRAIN_THROW("checkpoint file ", file, " has a bad safetensors header: ", what,
                 "; the file is damaged or not a safetensors file (restore it or use another checkpoint)");
  };
  if (n > kMaxHeaderBytes) fail("header of " + std::to_string(n) + " bytes exceeds the limit");
  json j = json::parse(text, text + n, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) fail("the header is not valid JSON");
  if (!j.is_object()) fail("the header is not a JSON object");
  Header h;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    const json& v = it.value();
    if (key == "__metadata__") {
      if (!v.is_object()) fail("__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) fail("__metadata__ value '" + m.key() + "' is not a string");
        h.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + key + "': ";
    if (!v.is_object()) fail(where + "entry is not an object");
    Entry e;
    e.name = key;
    if (!v.contains("dtype") || !v["dtype"].is_string()) fail(where + "missing dtype");
    e.dtype = v["dtype"].get<std::string>();
    const size_t item = dtype_bytes(e.dtype);
    if (item == 0) fail(where + "unknown dtype '" + e.dtype + "'");
    if (!v.contains("shape") || !v["shape"].is_array()) fail(where + "missing shape");
    if (v["shape"].size() > 16) fail(where + "more than 16 dimensions");
    uint64_t numel = 1;
    for (const auto& d : v["shape"]) {
      if (!d.is_number_unsigned()) fail(where + "shape has a negative or non-integer dimension");
      const uint64_t dim = d.get<uint64_t>();
      if (dim > (1ull << 48) || (dim != 0 && numel > (1ull << 48) / dim)) fail(where + "shape is too large");
      numel *= dim;
      e.shape.push_back(static_cast<int64_t>(dim));
    }
    if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2 ||
        !v["data_offsets"][0].is_number_unsigned() || !v["data_offsets"][1].is_number_unsigned()) {
      fail(where + "data_offsets is not a pair of non-negative integers");
    }
    e.begin = v["data_offsets"][0].get<uint64_t>();
    e.end = v["data_offsets"][1].get<uint64_t>();
    if (e.begin > e.end || e.end > data_size) {
      fail(where + "data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
           ") lie outside the file's " + std::to_string(data_size) + " data bytes (truncated?)");
    }
    if (e.end - e.begin != numel * item) {
      fail(where + "data_offsets cover " + std::to_string(e.end - e.begin) + " bytes but the shape and dtype need " +
           std::to_string(numel * item));
    }
    h.entries.push_back(std::move(e));
  }
  std::sort(h.entries.begin(), h.entries.end(), [](const Entry& a, const Entry& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < h.entries.size(); ++i) {
    if (h.entries[i].begin < h.entries[i - 1].end) {
      fail("tensors '" + h.entries[i - 1].name + "' and '" + h.entries[i].name + "' overlap");
    }
  }
  h.data_start = 8 + n;
  return h;
}

Header read_header(const std::string& path, KeyPtr key) {
  io::InFile f(path, std::move(key));
  DTRAIN_CHECK(f.size() >= 8, "checkpoint file ", path, " is truncated: ", f.size(),
               " bytes, shorter than the 8-byte safetensors header length");
  unsigned char len_bytes[8];
  f.read_at(0, len_bytes, 8);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len_bytes[i];
  DTRAIN_CHECK(n <= kMaxHeaderBytes, "checkpoint file ", path, " has a bad safetensors header: length ", n,
               " exceeds the limit of ", kMaxHeaderBytes, " bytes (damaged or not a safetensors file)");
  DTRAIN_CHECK(n <= f.size() - 8, "checkpoint file ", path, " is truncated: its header claims ", n,
               " bytes but the file has ", f.size());
  std::string text(static_cast<size_t>(n), '\0');
  f.read_at(8, text.data(), text.size());
  return parse_header(text.data(), text.size(), f.size() - 8 - n, path);
}

std::string build_header(std::vector<Entry>& entries, const std::map<std::string, std::string>& metadata) {
  json j = json::object();
  uint64_t off = 0;
  for (auto& e : entries) {
    uint64_t numel = 1;
    for (int64_t d : e.shape) numel *= static_cast<uint64_t>(d);
    e.begin = off;
    e.end = off + numel * dtype_bytes(e.dtype);
    off = e.end;
    j[e.name] = {{"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {e.begin, e.end}}};
  }
  if (!metadata.empty()) j["__metadata__"] = metadata;
  std::string text = j.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + text;
}

}  // namespace dtrain::checkpoint::st
