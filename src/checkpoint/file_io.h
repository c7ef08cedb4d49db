// File primitives for checkpoints: durable writes (fsync of files and of the
// directories that name them), exact positional reads, and streaming BLAKE2b
// checksums (libsodium crypto_generichash). Every failure is a dtrain::Error
// naming the path and the system's reason.
#pragma once

#include <sodium.h>

#include <cstdint>
#include <string>

namespace dtrain::checkpoint::io {

// Streaming BLAKE2b-256, printed as lowercase hex.
class Hasher {
 public:
  Hasher();
  void update(const void* data, size_t n);
  std::string hex();

 private:
  crypto_generichash_state state_;
};

// A new file (must not exist) written sequentially, hashed as it goes, and
// fsynced by finish(). Destroyed unfinished, it is closed and removed.
class OutFile {
 public:
  explicit OutFile(const std::string& path);
  ~OutFile();
  OutFile(const OutFile&) = delete;
  OutFile& operator=(const OutFile&) = delete;
  void write(const void* data, size_t n);
  // fsync + close; returns the checksum of everything written.
  std::string finish();
  uint64_t bytes() const { return bytes_; }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t bytes_ = 0;
  Hasher hash_;
};

// A file opened for positional reads.
class InFile {
 public:
  explicit InFile(const std::string& path);
  ~InFile();
  InFile(const InFile&) = delete;
  InFile& operator=(const InFile&) = delete;
  uint64_t size() const { return size_; }
  // Exactly n bytes at offset; throws naming the file if it is shorter.
  void read_at(uint64_t offset, void* out, size_t n) const;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

void fsync_dir(const std::string& dir);
// Writes `content` to path.tmp, fsyncs, renames onto path, fsyncs the directory.
void write_file_atomic(const std::string& path, const std::string& content);
std::string read_small_file(const std::string& path, uint64_t max_bytes);
// Checksum of a whole file, streamed.
std::string hash_file(const std::string& path);

}  // namespace dtrain::checkpoint::io
