// File primitives for checkpoints: durable writes (fsync of files and of the
// directories that name them), exact positional reads, and streaming BLAKE2b
// checksums (libsodium crypto_generichash). Given a key, files are encrypted
// and authenticated chunk by chunk (encryption.h) and every offset and size
// here is of the plaintext. Every failure is a dtrain::Error naming the path
// and the problem.
#pragma once

#include <sodium.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "checkpoint/encryption.h"
#include "dtrain/checkpoint.h"

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
  explicit OutFile(const std::string& path, KeyPtr key = nullptr);
  ~OutFile();
  OutFile(const OutFile&) = delete;
  OutFile& operator=(const OutFile&) = delete;
  void write(const void* data, size_t n);
  // fsync + close; returns the file's checksum: BLAKE2b of the plaintext, or
  // for an encrypted file BLAKE2b of its chunk tags in order (each tag
  // authenticates its chunk under the key, so this binds the exact content
  // without a second pass over the data).
  std::string finish();
  uint64_t bytes() const { return bytes_; }  // plaintext bytes

 private:
  void write_raw(const void* data, size_t n);
  void seal_chunk(size_t n, bool last);
  std::string path_;
  int fd_ = -1;
  uint64_t bytes_ = 0;
  Hasher hash_;
  KeyPtr key_;
  enc::FileHeader header_;
  uint64_t chunk_index_ = 0;
  std::vector<unsigned char> plain_, sealed_;
};

// A file opened for positional reads.
class InFile {
 public:
  explicit InFile(const std::string& path, KeyPtr key = nullptr);
  ~InFile();
  InFile(const InFile&) = delete;
  InFile& operator=(const InFile&) = delete;
  uint64_t size() const { return size_; }
  // Exactly n bytes at offset; throws naming the file if it is shorter.
  void read_at(uint64_t offset, void* out, size_t n) const;
  const std::string& path() const { return path_; }
  bool encrypted() const { return key_ != nullptr; }
  // Encrypted files: the checksum of the chunk tags in order (as
  // OutFile::finish computes it); chunks not yet read in order are read and
  // authenticated first. Call once.
  std::string tag_checksum() const;

 private:
  void read_raw(uint64_t offset, void* out, size_t n) const;
  void load_chunk(uint64_t index) const;
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;      // plaintext
  uint64_t raw_size_ = 0;  // on disk
  KeyPtr key_;
  enc::FileHeader header_;
  uint64_t chunks_ = 0;
  mutable int64_t cached_ = -1;
  mutable Hasher tags_;
  mutable uint64_t next_tag_ = 0;
  mutable std::vector<unsigned char> plain_, sealed_;
};

void fsync_dir(const std::string& dir);
// Writes `content` to path.tmp, fsyncs, renames onto path, fsyncs the directory.
void write_file_atomic(const std::string& path, const std::string& content, KeyPtr key = nullptr);
std::string read_small_file(const std::string& path, uint64_t max_bytes, KeyPtr key = nullptr);
// Reads a whole file once from start to end (authenticating every chunk when
// encrypted), passing each block of plaintext and its offset to visit;
// returns the file's checksum as OutFile::finish computes it.
std::string stream_file(const InFile& f, const std::function<void(uint64_t, const char*, size_t)>& visit = {});
std::string hash_file(const std::string& path, KeyPtr key = nullptr);

}  // namespace dtrain::checkpoint::io
