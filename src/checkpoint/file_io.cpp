// Durable, checked file I/O for checkpoints (see file_io.h). POSIX calls are
// used directly because std::fstream cannot fsync or read at an offset.
#include "checkpoint/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "dtrain/error.h"

namespace dtrain::checkpoint::io {

namespace {
std::string why() {
  return std::strerror(errno);
}
struct SodiumInit {
  SodiumInit() {
    if (sodium_init() < 0) DTRAIN_THROW("libsodium failed to initialise");
  }
};
void ensure_sodium() {
  static SodiumInit once;
}
}  // namespace

Hasher::Hasher() {
  ensure_sodium();
  crypto_generichash_init(&state_, nullptr, 0, crypto_generichash_BYTES);
}

void Hasher::update(const void* data, size_t n) {
  crypto_generichash_update(&state_, static_cast<const unsigned char*>(data), n);
}

std::string Hasher::hex() {
  unsigned char out[crypto_generichash_BYTES];
  crypto_generichash_final(&state_, out, sizeof(out));
  char text[2 * crypto_generichash_BYTES + 1];
  sodium_bin2hex(text, sizeof(text), out, sizeof(out));
  return text;
}

OutFile::OutFile(const std::string& path, KeyPtr key) : path_(path), key_(std::move(key)) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  DTRAIN_CHECK(fd_ >= 0, "cannot create checkpoint file ", path, ": ", why());
  if (key_) {
    header_ = enc::new_header(*key_);
    write_raw(header_.raw, enc::kHeaderBytes);
    plain_.reserve(header_.chunk + 1);
    sealed_.resize(header_.chunk + enc::kTagBytes);
  }
}

OutFile::~OutFile() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(path_.c_str());
  }
}

void OutFile::write(const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  bytes_ += n;
  if (!key_) {
    hash_.update(p, n);
    write_raw(p, n);
    return;
  }
  while (n > 0) {  // a full chunk is sealed only once more data follows (the last one is marked)
    if (plain_.size() == header_.chunk) seal_chunk(header_.chunk, false);
    const size_t take = std::min(n, header_.chunk - plain_.size());
    plain_.insert(plain_.end(), p, p + take);
    p += take;
    n -= take;
  }
}

void OutFile::seal_chunk(size_t n, bool last) {
  enc::seal(*key_, header_, chunk_index_++, last, plain_.data(), n, sealed_.data());
  hash_.update(sealed_.data() + n, enc::kTagBytes);
  write_raw(sealed_.data(), n + enc::kTagBytes);
  plain_.erase(plain_.begin(), plain_.begin() + static_cast<std::ptrdiff_t>(n));
}

void OutFile::write_raw(const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd_, p, n);
    if (w < 0 && errno == EINTR) continue;
    DTRAIN_CHECK(w > 0, "writing checkpoint file ", path_, " failed: ", why(), " (disk full?)");
    p += w;
    n -= static_cast<size_t>(w);
  }
}

std::string OutFile::finish() {
  if (key_) seal_chunk(plain_.size(), true);
  DTRAIN_CHECK(::fsync(fd_) == 0, "fsync of checkpoint file ", path_, " failed: ", why());
  const int fd = fd_;
  fd_ = -1;
  DTRAIN_CHECK(::close(fd) == 0, "closing checkpoint file ", path_, " failed: ", why());
  return hash_.hex();
}

InFile::InFile(const std::string& path, KeyPtr key) : path_(path), key_(std::move(key)) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  DTRAIN_CHECK(fd_ >= 0, "cannot open checkpoint file ", path, ": ", why());
  struct stat st {};
  if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd_);
    fd_ = -1;
    DTRAIN_THROW("checkpoint file ", path, " is not a regular file");
  }
  raw_size_ = size_ = static_cast<uint64_t>(st.st_size);
  unsigned char head[enc::kHeaderBytes] = {};
  const size_t n = static_cast<size_t>(std::min<uint64_t>(raw_size_, enc::kHeaderBytes));
  read_raw(0, head, n);
  if (!key_) {
    DTRAIN_CHECK(!enc::has_magic(head, n), "checkpoint file ", path,
                 " is encrypted; give its key with --checkpoint-key-file or DTRAIN_CHECKPOINT_KEY");
    return;
  }
  DTRAIN_CHECK(n == enc::kHeaderBytes || !enc::has_magic(head, n), "checkpoint file ", path,
               " is truncated: shorter than its encryption header");
  header_ = enc::parse_header(head, *key_, path);
  const uint64_t stored = header_.chunk + enc::kTagBytes, body = raw_size_ - enc::kHeaderBytes;
  DTRAIN_CHECK(body >= enc::kTagBytes, "checkpoint file ", path, " is truncated: no complete encrypted chunk");
  chunks_ = (body + stored - 1) / stored;
  const uint64_t last = body - (chunks_ - 1) * stored;
  DTRAIN_CHECK(last >= enc::kTagBytes, "checkpoint file ", path, " is truncated: its last encrypted chunk is cut");
  size_ = (chunks_ - 1) * header_.chunk + last - enc::kTagBytes;
  sealed_.resize(stored);
  plain_.resize(header_.chunk);
}

void InFile::load_chunk(uint64_t index) const {
  if (cached_ == static_cast<int64_t>(index)) return;
  const uint64_t stored = header_.chunk + enc::kTagBytes;
  const uint64_t off = enc::kHeaderBytes + index * stored;
  const size_t n = static_cast<size_t>(std::min<uint64_t>(stored, raw_size_ - off));
  read_raw(off, sealed_.data(), n);
  cached_ = -1;
  enc::open(*key_, header_, index, index + 1 == chunks_, sealed_.data(), n, plain_.data(), path_);
  cached_ = static_cast<int64_t>(index);
  if (index == next_tag_) {
    tags_.update(sealed_.data() + n - enc::kTagBytes, enc::kTagBytes);
    ++next_tag_;
  }
}

std::string InFile::tag_checksum() const {
  DTRAIN_CHECK(key_ != nullptr, "checkpoint file ", path_, ": internal error, a tag checksum of a plain file");
  while (next_tag_ < chunks_) {  // chunks not read in order yet (or at all): read and authenticate them now
    cached_ = -1;
    load_chunk(next_tag_);
  }
  return tags_.hex();
}

InFile::~InFile() {
  if (fd_ >= 0) ::close(fd_);
}

void InFile::read_at(uint64_t offset, void* out, size_t n) const {
  DTRAIN_CHECK(offset <= size_ && n <= size_ - offset, "checkpoint file ", path_, " is truncated: need bytes [", offset,
               ", ", offset + n, ") but it has ", size_);
  if (!key_) {
    read_raw(offset, out, n);
    return;
  }
  char* p = static_cast<char*>(out);
  while (n > 0) {
    const uint64_t index = offset / header_.chunk, within = offset % header_.chunk;
    load_chunk(index);
    const size_t take = static_cast<size_t>(std::min<uint64_t>(n, header_.chunk - within));
    std::memcpy(p, plain_.data() + within, take);
    p += take;
    n -= take;
    offset += take;
  }
}

void InFile::read_raw(uint64_t offset, void* out, size_t n) const {
  char* p = static_cast<char*>(out);
  while (n > 0) {
    const ssize_t r = ::pread(fd_, p, n, static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    DTRAIN_CHECK(r > 0, "reading checkpoint file ", path_, " at byte ", offset,
                 " failed: ", r == 0 ? std::string("unexpected end of file (truncated?)") : why());
    p += r;
    n -= static_cast<size_t>(r);
    offset += static_cast<uint64_t>(r);
  }
}

void fsync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DTRAIN_CHECK(fd >= 0, "cannot open directory ", dir, " to fsync it: ", why());
  const int rc = ::fsync(fd);
  const std::string reason = rc == 0 ? "" : why();
  ::close(fd);
  DTRAIN_CHECK(rc == 0, "fsync of directory ", dir, " failed: ", reason);
}

void write_file_atomic(const std::string& path, const std::string& content, KeyPtr key) {
  const std::string tmp = path + ".tmp";
  ::unlink(tmp.c_str());
  {
    OutFile f(tmp, std::move(key));
    f.write(content.data(), content.size());
    f.finish();
  }
  DTRAIN_CHECK(::rename(tmp.c_str(), path.c_str()) == 0, "cannot rename ", tmp, " to ", path, ": ", why());
  fsync_dir(std::filesystem::path(path).parent_path().string());
}

std::string read_small_file(const std::string& path, uint64_t max_bytes, KeyPtr key) {
  InFile f(path, std::move(key));
  DTRAIN_CHECK(f.size() <= max_bytes, "file ", path, " is ", f.size(), " bytes, more than the limit of ", max_bytes,
               "; it is not a checkpoint file dtrain wrote");
  std::string s(static_cast<size_t>(f.size()), '\0');
  if (!s.empty()) f.read_at(0, s.data(), s.size());
  return s;
}

std::string stream_file(const InFile& f, const std::function<void(uint64_t, const char*, size_t)>& visit) {
  Hasher h;
  std::vector<char> buf(4 << 20);
  for (uint64_t off = 0; off < f.size();) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), f.size() - off));
    f.read_at(off, buf.data(), n);
    if (!f.encrypted()) h.update(buf.data(), n);
    if (visit) visit(off, buf.data(), n);
    off += n;
  }
  if (f.encrypted()) return f.tag_checksum();
  return h.hex();
}

std::string hash_file(const std::string& path, KeyPtr key) {
  InFile f(path, std::move(key));
  return stream_file(f);
}

}  // namespace dtrain::checkpoint::io
