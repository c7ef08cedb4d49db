// Store: the key/value rendezvous every rank of a job shares.
//
// Implementations provide five primitives (set, try_get, add, check,
// delete_key); the blocking calls (get, wait) are built on them here by
// polling with backoff, so every blocking call has the same timeout model.
//
// TcpStore: hosted by rank 0 (is_server), reached by every rank over TCP.
//   Every peer proves it holds the job secret (DTRAIN_AUTH_TOKEN, at least
//   128 bits: 32 hex digits) by challenge-response over the whole handshake,
//   the client first; the token never crosses the wire. Every later frame is
//   encrypted and authenticated with per-connection keys. The server serves
//   every connection from one thread and bounds what unauthenticated peers
//   can cost. See docs/security.md.
// FileStore: a directory on a shared filesystem; one file per key, written
//   aside and renamed, so a reader never sees a half-written value.
// PrefixStore: a view of another store under "prefix/"; sub-communicators use it.
// MemoryStore: a map inside this process, for a communicator of one process
//   (single_process_group in init.h); nothing outside the process reaches it.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace dtrain::comm {

class Store {
 public:
  virtual ~Store() = default;

  virtual void set(const std::string& key, const std::string& value) = 0;
  // The value, or nullopt when the key does not exist (does not wait).
  virtual std::optional<std::string> try_get(const std::string& key) = 0;
  // Adds delta to the integer stored at key (0 when absent); returns the new value.
  virtual int64_t add(const std::string& key, int64_t delta) = 0;
  // True when every key exists.
  virtual bool check(const std::vector<std::string>& keys) = 0;
  // Removes key; returns whether it existed.
  virtual bool delete_key(const std::string& key) = 0;

  // Waits until key exists (at most timeout(), or `timeout`) and returns it.
  // Throws dtrain::Error naming the key on timeout.
  std::string get(const std::string& key);
  std::string get(const std::string& key, std::chrono::milliseconds timeout);
  // Waits until all keys exist; throws dtrain::Error naming the missing ones on timeout.
  void wait(const std::vector<std::string>& keys);
  void wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout);

  std::chrono::milliseconds timeout() const { return timeout_; }
  void set_timeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }

 protected:
  explicit Store(std::chrono::milliseconds timeout) : timeout_(timeout) {}

 private:
  std::chrono::milliseconds timeout_;
};

struct TcpStoreOptions {
  std::string host = "127.0.0.1";  // where the server listens / clients connect
  int port = 0;                    // server: 0 picks a free port (see TcpStore::port())
  bool is_server = false;          // true on the rank that hosts the store (rank 0)
  // Server only: listen on every interface (0.0.0.0) instead of `host`.
  bool bind_all_interfaces = false;
  int rank = -1;  // this process's rank, so the host can name a peer that dies
  std::chrono::milliseconds timeout = std::chrono::seconds(300);
  // Job secret. Empty: read DTRAIN_AUTH_TOKEN. Under 128 bits (32 hex digits),
  // or missing, the constructor throws saying how to make one.
  std::string auth_token;
};

class TcpStore final : public Store {
 public:
  // Server: starts listening and connects its own client. Client: connects
  // (retrying with backoff and jitter until the timeout) and authenticates;
  // throws dtrain::Error when refused or unreachable.
  explicit TcpStore(TcpStoreOptions options);
  ~TcpStore() override;
  TcpStore(const TcpStore&) = delete;
  TcpStore& operator=(const TcpStore&) = delete;

  void set(const std::string& key, const std::string& value) override;
  std::optional<std::string> try_get(const std::string& key) override;
  int64_t add(const std::string& key, int64_t delta) override;
  bool check(const std::vector<std::string>& keys) override;
  bool delete_key(const std::string& key) override;

  // The port the server listens on (the chosen one when options.port was 0).
  int port() const;
  const std::string& host() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class FileStore final : public Store {
 public:
  // `directory` is created if missing; all ranks must name the same one.
  explicit FileStore(const std::string& directory, std::chrono::milliseconds timeout = std::chrono::seconds(300));

  void set(const std::string& key, const std::string& value) override;
  std::optional<std::string> try_get(const std::string& key) override;
  int64_t add(const std::string& key, int64_t delta) override;
  bool check(const std::vector<std::string>& keys) override;
  bool delete_key(const std::string& key) override;

 private:
  std::string path_for(const std::string& key) const;
  std::string directory_;
};

class MemoryStore final : public Store {
 public:
  explicit MemoryStore(std::chrono::milliseconds timeout = std::chrono::seconds(300)) : Store(timeout) {}

  void set(const std::string& key, const std::string& value) override;
  std::optional<std::string> try_get(const std::string& key) override;
  int64_t add(const std::string& key, int64_t delta) override;
  bool check(const std::vector<std::string>& keys) override;
  bool delete_key(const std::string& key) override;

 private:
  std::mutex mutex_;
  std::map<std::string, std::string> values_;
};

class PrefixStore final : public Store {
 public:
  PrefixStore(std::string prefix, std::shared_ptr<Store> base);

  void set(const std::string& key, const std::string& value) override;
  std::optional<std::string> try_get(const std::string& key) override;
  int64_t add(const std::string& key, int64_t delta) override;
  bool check(const std::vector<std::string>& keys) override;
  bool delete_key(const std::string& key) override;

  const std::shared_ptr<Store>& base() const { return base_; }

 private:
  std::string full(const std::string& key) const { return prefix_ + "/" + key; }
  std::string prefix_;
  std::shared_ptr<Store> base_;
};

}  // namespace dtrain::comm
