// Token shards in llm.c's format: a header of 256 int32 (header[0] = magic
// 20240520, header[1] = version 1, header[2] = number of tokens), then that
// many uint16 tokens. A file whose size does not match its header (truncated,
// or something else entirely) is refused with a message naming the file.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace dtrain::data {

constexpr int32_t kShardMagic = 20240520;
constexpr int32_t kShardVersion = 1;
constexpr int64_t kShardHeaderInts = 256;
constexpr int64_t kShardHeaderBytes = kShardHeaderInts * 4;

// A sequence of tokens the loader can read windows of.
class TokenSource {
 public:
  virtual ~TokenSource() = default;
  virtual int64_t size() const = 0;
  // Copies tokens [offset, offset + count) into out; throws when out of range.
  virtual void read(int64_t offset, int64_t count, uint16_t* out) const = 0;
  virtual std::string describe() const = 0;
};

// Tokens held in memory (the built-in dataset, tokenized text).
class MemoryTokens : public TokenSource {
 public:
  MemoryTokens(std::vector<uint16_t> tokens, std::string label);
  int64_t size() const override { return static_cast<int64_t>(tokens_.size()); }
  void read(int64_t offset, int64_t count, uint16_t* out) const override;
  std::string describe() const override { return label_; }

 private:
  std::vector<uint16_t> tokens_;
  std::string label_;
};

// A shard file, validated when opened and read window by window (never
// loaded whole, so shards may be larger than memory).
class ShardFile : public TokenSource {
 public:
  explicit ShardFile(std::string path);
  ~ShardFile() override;
  int64_t size() const override { return num_tokens_; }
  void read(int64_t offset, int64_t count, uint16_t* out) const override;
  std::string describe() const override { return path_; }

 private:
  std::string path_;
  int64_t num_tokens_ = 0;
  int fd_ = -1;
};

// Validates the header and size of a shard; returns its token count.
int64_t read_shard_header(const std::string& path);
// Whole shard into memory.
std::vector<uint16_t> read_token_shard(const std::string& path);
// Writes a shard atomically (to a temporary name, then renamed), so an
// interrupted write never leaves a half-written shard under `path`.
void write_token_shard(const std::string& path, const std::vector<uint16_t>& tokens);
// Paths matching a glob pattern ("data/train_*.bin"), sorted; throws if none.
std::vector<std::string> glob_paths(const std::string& pattern);

}  // namespace dtrain::data
