// TcpStore: the server (a listening thread plus one thread per connection,
// all state in one map under one mutex) and the client (one connection, one
// request at a time under a mutex).
//
// Connection life: hello -> challenge -> proof -> auth_ok, then requests until
// bye. A connection that breaks the protocol is closed, nothing else; one
// that drops without bye after naming its rank marks that rank lost and
// poisons the store, which is how the other ranks learn of a dead peer.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "comm/socket_util.h"
#include "comm/store_auth.h"
#include "comm/store_keys.h"
#include "comm/store_protocol.h"
#include "dtrain/comm/store.h"
#include "dtrain/error.h"

namespace dtrain::comm {

namespace {

using protocol::Message;
using protocol::MessageType;

constexpr auto kHandshakeTimeout = std::chrono::seconds(5);
const char* const kClientLabel = "dtrain-client";
const char* const kServerLabel = "dtrain-server";

std::string token_or_env(const std::string& token) {
  if (!token.empty()) return token;
  const char* env = std::getenv("DTRAIN_AUTH_TOKEN");
  return env ? env : "";
}

Message make(MessageType type) {
  Message m;
  m.type = type;
  return m;
}

// ---- server ----------------------------------------------------------------

class Server {
 public:
  Server(const std::string& host, int port, bool all_interfaces, const std::string& token)
      : key_(auth::derive_key(token)) {
    listen_ = net::listen_on(host, port, all_interfaces, &port_);
    accept_thread_ = std::thread([this] { accept_loop(); });
  }

  // Lets the other ranks say goodbye before the store goes away (their last
  // requests would fail otherwise); bounded by `limit`. In a failed job a
  // stopped or cut-off rank never says goodbye: wait only long enough for the
  // others to read the poison (they poll it every heartbeat, at most 1 s).
  void drain(std::chrono::milliseconds limit) {
    const auto until = net::Clock::now() + limit;
    const auto failed_until = net::Clock::now() + std::chrono::seconds(2);
    while (net::Clock::now() < until) {
      {
        std::lock_guard<std::mutex> lock(conn_mutex_);
        if (open_fds_.empty()) return;
      }
      if (net::Clock::now() >= failed_until) {
        std::lock_guard<std::mutex> lock(data_mutex_);
        if (data_.count(keys::kPoison) != 0) return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  ~Server() {
    stop_ = true;
    if (accept_thread_.joinable()) accept_thread_.join();
    {
      std::lock_guard<std::mutex> lock(conn_mutex_);
      for (int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);  // wakes blocked readers
    }
    for (auto& t : threads_) t.join();
  }

  int port() const { return port_; }

 private:
  void accept_loop() {
    while (!stop_) {
      pollfd p{listen_.get(), POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      const int fd = ::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      const int one = 1;  // replies are small: never hold them back (Nagle)
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      std::lock_guard<std::mutex> lock(conn_mutex_);
      open_fds_.insert(fd);
      threads_.emplace_back([this, fd] { serve(fd); });
    }
  }

  void serve(int raw_fd) {
    net::Fd fd(raw_fd);
    const std::string peer = net::peer_name(raw_fd);
    int rank = -1;
    bool authenticated = false, said_bye = false;
    try {
      rank = handshake(raw_fd, peer);
      authenticated = rank >= -1;
      if (rank < -1) rank = -1;
      while (authenticated && !stop_) {
        Message req = net::recv_message(raw_fd, net::no_deadline());
        if (req.type == MessageType::bye) {
          said_bye = true;
          break;
        }
        net::send_message(raw_fd, handle(req), net::deadline_after(std::chrono::seconds(30)));
      }
    } catch (const protocol::ProtocolError& e) {
      std::fprintf(stderr, "[dtrain store] closing connection from %s (rank %d): malformed message: %s\n", peer.c_str(),
                   rank, e.what());
    } catch (const std::exception& e) {
      // Connection closed or timed out; handled below.
    }
    if (authenticated && !said_bye && !stop_ && rank >= 0) mark_lost(rank, peer);
    std::lock_guard<std::mutex> lock(conn_mutex_);
    open_fds_.erase(raw_fd);
    // fd closes here, after it left open_fds_, so shutdown() never hits a reused number.
  }

  // Returns the peer's rank (-1 if it gave none) on success, -2 on refusal.
  int handshake(int fd, const std::string& peer) {
    const auto deadline = net::deadline_after(kHandshakeTimeout);
    Message hello = net::recv_message(fd, deadline);
    if (hello.type != MessageType::client_hello || hello.version != protocol::kVersion) {
      refuse(fd, peer, -1,
             hello.type != MessageType::client_hello ? "expected a hello message first"
                                                     : "protocol version mismatch (different dtrain versions?)");
      return -2;
    }
    Message challenge = make(MessageType::server_challenge);
    challenge.nonce = auth::random_nonce();
    challenge.proof = auth::proof(key_, kServerLabel, hello.nonce, challenge.nonce);
    net::send_message(fd, challenge, deadline);
    Message answer = net::recv_message(fd, deadline);
    if (answer.type != MessageType::client_proof ||
        !auth::verify(key_, kClientLabel, challenge.nonce, hello.nonce, answer.proof)) {
      refuse(fd, peer, hello.rank, "authentication failed: wrong or missing DTRAIN_AUTH_TOKEN");
      return -2;
    }
    net::send_message(fd, make(MessageType::auth_ok), deadline);
    return hello.rank;
  }

  void refuse(int fd, const std::string& peer, int rank, const std::string& reason) {
    std::fprintf(stderr, "[dtrain store] refused connection from %s (claims rank %d): %s\n", peer.c_str(), rank,
                 reason.c_str());
    std::fflush(stderr);
    Message fail = make(MessageType::auth_fail);
    fail.text = reason;
    try {
      net::send_message(fd, fail, net::deadline_after(std::chrono::seconds(1)));
    } catch (const std::exception&) {
    }
  }

  void mark_lost(int rank, const std::string& peer) {
    std::lock_guard<std::mutex> lock(data_mutex_);
    data_[keys::lost(rank)] = "1";
    if (data_.count(keys::kPoison) == 0) {
      data_[keys::kPoison] = "rank " + std::to_string(rank) + " (" + peer +
                             ") disconnected from the store without shutting down: the process died or was killed";
      std::fprintf(stderr, "[dtrain store] rank %d (%s) disconnected without shutting down; marking the job failed\n",
                   rank, peer.c_str());
      std::fflush(stderr);
    }
  }

  Message handle(const Message& req) {
    std::lock_guard<std::mutex> lock(data_mutex_);
    switch (req.type) {
      case MessageType::set:
        data_[req.key] = req.value;
        return make(MessageType::ok);
      case MessageType::get: {
        Message r = make(MessageType::value);
        auto it = data_.find(req.key);
        r.found = it != data_.end();
        if (r.found) r.value = it->second;
        return r;
      }
      case MessageType::add: {
        int64_t current = 0;
        auto it = data_.find(req.key);
        if (it != data_.end()) {
          try {
            current = std::stoll(it->second);
          } catch (const std::exception&) {
            Message e = make(MessageType::error);
            e.text = "add on key '" + req.key + "' whose value is not an integer";
            return e;
          }
        }
        current += req.number;
        data_[req.key] = std::to_string(current);
        Message r = make(MessageType::number);
        r.number = current;
        return r;
      }
      case MessageType::check: {
        Message r = make(MessageType::boolean);
        r.found = true;
        for (const auto& k : req.keys) r.found = r.found && data_.count(k) > 0;
        return r;
      }
      case MessageType::delete_key: {
        Message r = make(MessageType::boolean);
        r.found = data_.erase(req.key) > 0;
        return r;
      }
      default:
        throw protocol::ProtocolError(std::string("unexpected request type ") + protocol::message_type_name(req.type));
    }
  }

  std::string key_;
  net::Fd listen_;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread accept_thread_;
  std::mutex conn_mutex_;
  std::set<int> open_fds_;
  std::vector<std::thread> threads_;
  std::mutex data_mutex_;
  std::map<std::string, std::string> data_;
};

}  // namespace

// ---- client ------------------------------------------------------------------

struct TcpStore::Impl {
  TcpStoreOptions options;
  std::unique_ptr<Server> server;
  std::mutex mutex;
  net::Fd fd;
  int port = 0;

  std::string where() const { return options.host + ":" + std::to_string(port); }

  void connect_and_authenticate() {
    const std::string token = token_or_env(options.auth_token);
    const std::string key = auth::derive_key(token);
    fd = net::connect_with_retry(options.host, port, net::deadline_after(options.timeout));
    const auto deadline = net::deadline_after(std::min<std::chrono::milliseconds>(options.timeout, kHandshakeTimeout));
    try {
      Message hello = make(MessageType::client_hello);
      hello.version = protocol::kVersion;
      hello.nonce = auth::random_nonce();
      hello.rank = options.rank;
      net::send_message(fd.get(), hello, deadline);
      Message challenge = net::recv_message(fd.get(), deadline);
      if (challenge.type == MessageType::auth_fail) refused(challenge.text, token);
      DTRAIN_CHECK(challenge.type == MessageType::server_challenge, "the store at ", where(),
                   " answered the handshake with '", protocol::message_type_name(challenge.type),
                   "'; is MASTER_PORT pointing at a dtrain store?");
      Message answer = make(MessageType::client_proof);
      answer.proof = auth::proof(key, kClientLabel, challenge.nonce, hello.nonce);
      net::send_message(fd.get(), answer, deadline);
      Message verdict = net::recv_message(fd.get(), deadline);
      if (verdict.type == MessageType::auth_fail) refused(verdict.text, token);
      DTRAIN_CHECK(verdict.type == MessageType::auth_ok, "unexpected handshake reply from the store at ", where());
      // Mutual: the server must hold the token too, or it is not our job's store.
      DTRAIN_CHECK(auth::verify(key, kServerLabel, hello.nonce, challenge.nonce, challenge.proof), "the store at ",
                   where(), " could not prove it holds this job's DTRAIN_AUTH_TOKEN; refusing it");
    } catch (const net::ConnectionClosed& e) {
      DTRAIN_THROW("the store at ", where(), " closed the connection during authentication (", e.what(),
                   "); it most likely refused this process's DTRAIN_AUTH_TOKEN");
    } catch (const protocol::ProtocolError& e) {
      DTRAIN_THROW("the store at ", where(), " sent a malformed handshake message (", e.what(), ")");
    }
  }

  [[noreturn]] void refused(const std::string& reason, const std::string& token) {
    DTRAIN_THROW("the store at ", where(), " refused this process: ", reason,
                 token.empty() ? ". DTRAIN_AUTH_TOKEN is not set here; set it to the job's token"
                               : ". Set DTRAIN_AUTH_TOKEN to the same secret on every rank");
  }

  Message request(const Message& req) {
    std::lock_guard<std::mutex> lock(mutex);
    DTRAIN_CHECK(fd.valid(), "the connection to the store at ", where(), " is closed after an earlier failure");
    const auto deadline = net::deadline_after(options.timeout);
    try {
      net::send_message(fd.get(), req, deadline);
      Message reply = net::recv_message(fd.get(), deadline);
      if (reply.type == MessageType::error) DTRAIN_THROW("store error: ", reply.text);
      return reply;
    } catch (const net::ConnectionClosed& e) {
      fd.reset();
      DTRAIN_THROW("lost the connection to the store at ", where(), " (", e.what(),
                   "); rank 0 hosts the store: it has most likely exited or been killed");
    } catch (const protocol::ProtocolError& e) {
      fd.reset();
      DTRAIN_THROW("malformed reply from the store at ", where(), ": ", e.what());
    }
  }
};

TcpStore::TcpStore(TcpStoreOptions options) : Store(options.timeout), impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  auto& o = impl_->options;
  DTRAIN_CHECK(o.port >= 0 && o.port < 65536, "TcpStore port must be in [0, 65535], got ", o.port);
  if (o.is_server) {
    const std::string token = token_or_env(o.auth_token);
    DTRAIN_CHECK(!token.empty(),
                 "DTRAIN_AUTH_TOKEN is not set: the store refuses to run without a job secret. Set it to the same "
                 "random string on every rank (dtrain-run does this for single-node jobs)");
    impl_->server = std::make_unique<Server>(o.host, o.port, o.bind_all_interfaces, token);
    impl_->port = impl_->server->port();
  } else {
    DTRAIN_CHECK(o.port > 0, "TcpStore client needs the server's port (MASTER_PORT)");
    impl_->port = o.port;
  }
  impl_->connect_and_authenticate();
}

TcpStore::~TcpStore() {
  try {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    if (impl_->fd.valid())
      net::send_message(impl_->fd.get(), make(MessageType::bye), net::deadline_after(std::chrono::seconds(1)));
  } catch (const std::exception&) {
  }
  impl_->fd.reset();
  if (impl_->server) {
    impl_->server->drain(std::min<std::chrono::milliseconds>(impl_->options.timeout, std::chrono::seconds(10)));
    impl_->server.reset();
  }
}

int TcpStore::port() const {
  return impl_->port;
}
const std::string& TcpStore::host() const {
  return impl_->options.host;
}

void TcpStore::set(const std::string& key, const std::string& value) {
  DTRAIN_CHECK(key.size() <= protocol::kMaxKeyBytes, "store key of ", key.size(), " bytes exceeds the limit of ",
               protocol::kMaxKeyBytes);
  DTRAIN_CHECK(value.size() <= protocol::kMaxValueBytes, "store value of ", value.size(),
               " bytes exceeds the limit of ", protocol::kMaxValueBytes);
  Message m = make(MessageType::set);
  m.key = key;
  m.value = value;
  impl_->request(m);
}

std::optional<std::string> TcpStore::try_get(const std::string& key) {
  Message m = make(MessageType::get);
  m.key = key;
  Message r = impl_->request(m);
  if (!r.found) return std::nullopt;
  return r.value;
}

int64_t TcpStore::add(const std::string& key, int64_t delta) {
  Message m = make(MessageType::add);
  m.key = key;
  m.number = delta;
  return impl_->request(m).number;
}

bool TcpStore::check(const std::vector<std::string>& keys) {
  Message m = make(MessageType::check);
  m.keys = keys;
  return impl_->request(m).found;
}

bool TcpStore::delete_key(const std::string& key) {
  Message m = make(MessageType::delete_key);
  m.key = key;
  return impl_->request(m).found;
}

}  // namespace dtrain::comm
