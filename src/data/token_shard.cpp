#include "dtrain/data/token_shard.h"

#include <fcntl.h>
#include <glob.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "dtrain/error.h"

namespace dtrain::data {

// ---- MemoryTokens ---------------------------------------------------------------

MemoryTokens::MemoryTokens(std::vector<uint16_t> tokens, std::string label)
    : tokens_(std::move(tokens)), label_(std::move(label)) {}

void MemoryTokens::read(int64_t offset, int64_t count, uint16_t* out) const {
  DTRAIN_CHECK(offset >= 0 && count >= 0 && offset + count <= size(), label_, ": read of tokens [", offset, ", ",
               offset + count, ") is past its ", size(), " tokens");
  std::copy(tokens_.begin() + offset, tokens_.begin() + offset + count, out);
}

// ---- shard files ------------------------------------------------------------------

namespace {
// Reads exactly n bytes at offset; false on a short read.
bool pread_all(int fd, void* buf, size_t n, off_t offset) {
  char* p = static_cast<char*>(buf);
  while (n > 0) {
    const ssize_t got = ::pread(fd, p, n, offset);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    p += got;
    n -= static_cast<size_t>(got);
    offset += got;
  }
  return true;
}

int64_t validate_header(int fd, const std::string& path) {
  struct stat st {};
  DTRAIN_CHECK(::fstat(fd, &st) == 0, "cannot stat token shard ", path, ": ", std::strerror(errno));
  const int64_t file_size = static_cast<int64_t>(st.st_size);
  DTRAIN_CHECK(file_size >= kShardHeaderBytes, "token shard ", path, " is ", file_size,
               " bytes, shorter than the 1024-byte header: truncated or not a token shard");
  int32_t header[kShardHeaderInts];
  DTRAIN_CHECK(pread_all(fd, header, sizeof(header), 0), "cannot read the header of token shard ", path);
  DTRAIN_CHECK(header[0] == kShardMagic, "file ", path, " is not a token shard: magic number ", header[0],
               ", expected ", kShardMagic, " (llm.c format; make shards with dtrain_tokenize)");
  DTRAIN_CHECK(header[1] == kShardVersion, "token shard ", path, " has version ", header[1],
               ", this dtrain reads version ", kShardVersion, " (uint16 tokens)");
  const int64_t n = header[2];
  DTRAIN_CHECK(n >= 0, "token shard ", path, " declares a negative token count ", n);
  const int64_t expected = kShardHeaderBytes + 2 * n;
  DTRAIN_CHECK(file_size == expected, "token shard ", path, " declares ", n, " tokens (", expected,
               " bytes) but the file has ", file_size,
               " bytes: ", file_size < expected ? "it is truncated; re-create it" : "trailing data; re-create it");
  return n;
}
}  // namespace

ShardFile::ShardFile(std::string path) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  DTRAIN_CHECK(fd_ >= 0, "cannot open token shard ", path_, ": ", std::strerror(errno));
  try {
    num_tokens_ = validate_header(fd_, path_);
  } catch (...) {
    ::close(fd_);
    fd_ = -1;
    throw;
  }
}

ShardFile::~ShardFile() {
  if (fd_ >= 0) ::close(fd_);
}

void ShardFile::read(int64_t offset, int64_t count, uint16_t* out) const {
  DTRAIN_CHECK(offset >= 0 && count >= 0 && offset + count <= num_tokens_, path_, ": read of tokens [", offset, ", ",
               offset + count, ") is past its ", num_tokens_, " tokens");
  DTRAIN_CHECK(pread_all(fd_, out, static_cast<size_t>(count) * 2, static_cast<off_t>(kShardHeaderBytes + 2 * offset)),
               "short read from token shard ", path_, " (was it modified while in use?)");
}

int64_t read_shard_header(const std::string& path) {
  ShardFile f(path);
  return f.size();
}

std::vector<uint16_t> read_token_shard(const std::string& path) {
  ShardFile f(path);
  std::vector<uint16_t> tokens(static_cast<size_t>(f.size()));
  f.read(0, f.size(), tokens.data());
  return tokens;
}

void write_token_shard(const std::string& path, const std::vector<uint16_t>& tokens) {
  DTRAIN_CHECK(tokens.size() <= static_cast<size_t>(INT32_MAX), "write_token_shard: ", tokens.size(),
               " tokens do not fit one shard's int32 count; split them");
  int32_t header[kShardHeaderInts] = {};
  header[0] = kShardMagic;
  header[1] = kShardVersion;
  header[2] = static_cast<int32_t>(tokens.size());
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  FILE* f = std::fopen(tmp.c_str(), "wb");
  DTRAIN_CHECK(f != nullptr, "cannot create ", tmp, ": ", std::strerror(errno));
  const bool ok = std::fwrite(header, sizeof(header), 1, f) == 1 &&
                  (tokens.empty() || std::fwrite(tokens.data(), 2, tokens.size(), f) == tokens.size()) &&
                  std::fflush(f) == 0 && ::fsync(::fileno(f)) == 0;
  const bool closed = std::fclose(f) == 0;
  if (!ok || !closed) {
    std::remove(tmp.c_str());
    DTRAIN_THROW("writing token shard ", path, " failed (disk full?); nothing was written under that name");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    DTRAIN_THROW("cannot rename ", tmp, " to ", path, ": ", std::strerror(err));
  }
}

std::vector<std::string> glob_paths(const std::string& pattern) {
  glob_t g{};
  const int rc = ::glob(pattern.c_str(), 0, nullptr, &g);
  std::vector<std::string> out;
  if (rc == 0) {
    for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
  }
  ::globfree(&g);
  DTRAIN_CHECK(!out.empty(), "no files match '", pattern, "'; give a shard path or a glob like 'data/train_*.bin'");
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace dtrain::data
