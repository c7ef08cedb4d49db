// Store's blocking calls (polling with backoff), PrefixStore, FileStore and MemoryStore.
#include "dtrain/comm/store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "dtrain/error.h"

namespace dtrain::comm {

namespace {

using Clock = std::chrono::steady_clock;

// Poll intervals grow from 0.2 ms to 20 ms: quick when peers are close behind,
// cheap for the store when they are not.
void backoff_sleep(std::chrono::microseconds& delay) {
  std::this_thread::sleep_for(delay);
  delay = std::min(delay * 3 / 2, std::chrono::microseconds(20000));
}

std::string join_keys(const std::vector<std::string>& keys) {
  std::string out;
  for (size_t i = 0; i < keys.size() && i < 8; ++i) out += (i ? ", " : "") + keys[i];
  if (keys.size() > 8) out += ", ... (" + std::to_string(keys.size()) + " in all)";
  return out;
}

}  // namespace

std::string Store::get(const std::string& key) {
  return get(key, timeout_);
}

std::string Store::get(const std::string& key, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::chrono::microseconds delay(200);
  for (;;) {
    if (auto v = try_get(key)) return *v;
    if (Clock::now() >= deadline)
      DTRAIN_THROW("timed out after ", timeout.count() / 1000.0, " s waiting for store key '", key,
                   "' (a peer did not publish it: is every rank running? raise DTRAIN_TIMEOUT_S if it is just slow)");
    backoff_sleep(delay);
  }
}

void Store::wait(const std::vector<std::string>& keys) {
  wait(keys, timeout_);
}

void Store::wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::chrono::microseconds delay(200);
  for (;;) {
    if (check(keys)) return;
    if (Clock::now() >= deadline) {
      std::vector<std::string> missing;
      for (const auto& k : keys)
        if (!check({k})) missing.push_back(k);
      DTRAIN_THROW("timed out after ", timeout.count() / 1000.0, " s waiting for store keys [", join_keys(missing),
                   "] (a peer did not publish them: is every rank running?)");
    }
    backoff_sleep(delay);
  }
}

// ---- PrefixStore -------------------------------------------------------------

PrefixStore::PrefixStore(std::string prefix, std::shared_ptr<Store> base)
    : Store(base->timeout()), prefix_(std::move(prefix)), base_(std::move(base)) {
  DTRAIN_CHECK(base_ != nullptr, "PrefixStore needs a base store");
}
void PrefixStore::set(const std::string& key, const std::string& value) {
  base_->set(full(key), value);
}
std::optional<std::string> PrefixStore::try_get(const std::string& key) {
  return base_->try_get(full(key));
}
int64_t PrefixStore::add(const std::string& key, int64_t delta) {
  return base_->add(full(key), delta);
}
bool PrefixStore::check(const std::vector<std::string>& keys) {
  std::vector<std::string> f;
  f.reserve(keys.size());
  for (const auto& k : keys) f.push_back(full(k));
  return base_->check(f);
}
bool PrefixStore::delete_key(const std::string& key) {
  return base_->delete_key(full(key));
}

// ---- FileStore ---------------------------------------------------------------

FileStore::FileStore(const std::string& directory, std::chrono::milliseconds timeout)
    : Store(timeout), directory_(directory) {
  DTRAIN_CHECK(!directory_.empty(), "FileStore needs a directory");
  if (::mkdir(directory_.c_str(), 0700) != 0 && errno != EEXIST)
    DTRAIN_THROW("cannot create FileStore directory '", directory_, "': ", std::strerror(errno));
}

// Keys may hold '/' and other characters: hex-encode them into file names.
std::string FileStore::path_for(const std::string& key) const {
  static const char* kHex = "0123456789abcdef";
  std::string name = "k";
  for (unsigned char c : key) {
    name.push_back(kHex[c >> 4]);
    name.push_back(kHex[c & 15]);
  }
  return directory_ + "/" + name;
}

void FileStore::set(const std::string& key, const std::string& value) {
  const std::string path = path_for(key);
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    DTRAIN_CHECK(out.good(), "FileStore cannot write '", tmp, "': ", std::strerror(errno));
    out.write(value.data(), static_cast<std::streamsize>(value.size()));
    out.flush();
    DTRAIN_CHECK(out.good(), "FileStore failed writing '", tmp, "'");
  }
  // rename is atomic: readers see the old value or the new one, never half.
  DTRAIN_CHECK(::rename(tmp.c_str(), path.c_str()) == 0, "FileStore cannot rename '", tmp, "': ", std::strerror(errno));
}

std::optional<std::string> FileStore::try_get(const std::string& key) {
  std::ifstream in(path_for(key), std::ios::binary);
  if (!in.good()) return std::nullopt;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int64_t FileStore::add(const std::string& key, int64_t delta) {
  // One lock file serialises read-modify-write across processes.
  const std::string lock_path = directory_ + "/lock";
  const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  DTRAIN_CHECK(fd >= 0, "FileStore cannot open '", lock_path, "': ", std::strerror(errno));
  while (::flock(fd, LOCK_EX) != 0 && errno == EINTR) {
  }
  int64_t value = delta;
  try {
    if (auto old = try_get(key)) value += std::stoll(*old);
    set(key, std::to_string(value));
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);  // releases the lock
  return value;
}

bool FileStore::check(const std::vector<std::string>& keys) {
  for (const auto& k : keys)
    if (::access(path_for(k).c_str(), F_OK) != 0) return false;
  return true;
}

bool FileStore::delete_key(const std::string& key) {
  return ::unlink(path_for(key).c_str()) == 0;
}

// ---- MemoryStore -------------------------------------------------------------

void MemoryStore::set(const std::string& key, const std::string& value) {
  std::lock_guard<std::mutex> lock(mutex_);
  values_[key] = value;
}

std::optional<std::string> MemoryStore::try_get(const std::string& key) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = values_.find(key);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

int64_t MemoryStore::add(const std::string& key, int64_t delta) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string& v = values_[key];
  const int64_t value = (v.empty() ? 0 : std::stoll(v)) + delta;
  v = std::to_string(value);
  return value;
}

bool MemoryStore::check(const std::vector<std::string>& keys) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& k : keys)
    if (values_.count(k) == 0) return false;
  return true;
}

bool MemoryStore::delete_key(const std::string& key) {
  std::lock_guard<std::mutex> lock(mutex_);
  return values_.erase(key) > 0;
}

}  // namespace dtrain::comm
