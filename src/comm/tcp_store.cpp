// TcpStore's client: one connection, one request at a time under a mutex.
// Rank 0 also hosts the server (store_server.cpp) and reaches it through a
// client like everyone else.
//
// Handshake, as the client sees it: hello(version, nonce, rank, client id,
// ciphers) -> challenge(nonce, cipher) -> our proof over that transcript ->
// auth_ok(the server's proof over transcript + our proof), which we check
// (mutual). Then every request and reply is sealed with per-connection keys
// (store_session.h). A reply that fails to open, or a broken connection, gets
// one of a few fresh connections before the request fails.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "comm/socket_util.h"
#include "comm/store_auth.h"
#include "comm/store_protocol.h"
#include "comm/store_server.h"
#include "comm/store_session.h"
#include "dtrain/comm/store.h"
#include "dtrain/error.h"

namespace dtrain::comm {

namespace {

using protocol::Message;
using protocol::MessageType;

constexpr auto kHandshakeTimeout = std::chrono::milliseconds(5000);

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

}  // namespace

// ---- client ------------------------------------------------------------------

struct TcpStore::Impl {
  TcpStoreOptions options;
  std::string token;
  std::string key;
  const std::string client_id = auth::random_bytes(protocol::kClientIdBytes);
  std::atomic<uint64_t> next_request_id{1};
  std::unique_ptr<StoreServer> server;
  std::mutex mutex;
  net::Fd fd;
  std::unique_ptr<session::Channel> tx, rx;
  int port = 0;

  std::string where() const { return options.host + ":" + std::to_string(port); }

  // Connects (retrying until the timeout while the store is unreachable or
  // turns the connection away before the hello, as it does over its caps)
  // and authenticates.
  void connect_and_authenticate() {
    const auto deadline = net::deadline_after(options.timeout);
    auto backoff = std::chrono::milliseconds(20);
    for (;;) {
      fd = net::connect_with_retry(options.host, port, deadline);
      try {
        handshake(std::min(deadline, net::deadline_after(kHandshakeTimeout)));
        return;
      } catch (const TurnedAway& e) {
        drop(false);
        if (net::Clock::now() + backoff >= deadline)
          DTRAIN_THROW("the store at ", where(), " kept closing the connection before the handshake (", e.what(),
                       "); it is overloaded or refusing this host");
        std::this_thread::sleep_for(backoff);
        backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
      }
    }
  }

  // The server closed the connection before answering the hello.
  struct TurnedAway : std::runtime_error {
    using std::runtime_error::runtime_error;
  };

  void handshake(net::Deadline deadline) {
    try {
      Message hello = make(MessageType::client_hello);
      hello.version = protocol::kVersion;
      hello.nonce = auth::random_nonce();
      hello.rank = options.rank;
      hello.client_id = client_id;
      hello.ciphers = session::supported_ciphers();
      const std::string hello_body = protocol::encode_body(hello);
      net::write_all(fd.get(), (protocol::length_prefix(static_cast<uint32_t>(hello_body.size())) + hello_body).data(),
                     4 + hello_body.size(), deadline);
      uint8_t prefix[4];
      std::string challenge_body;
      try {
        challenge_body = net::recv_frame(fd.get(), deadline, protocol::kMaxReasonBytes + 64, prefix);
      } catch (const net::ConnectionClosed& e) {
        throw TurnedAway(e.what());
      }
      const Message challenge = parse(challenge_body);
      if (challenge.type == MessageType::auth_fail) refused(challenge.text);
      DTRAIN_CHECK(challenge.type == MessageType::server_challenge, "the store at ", where(),
                   " answered the handshake with '", protocol::message_type_name(challenge.type),
                   "'; is MASTER_PORT pointing at a dtrain store?");
      DTRAIN_CHECK((challenge.ciphers & hello.ciphers) != 0 && (challenge.ciphers & (challenge.ciphers - 1)) == 0,
                   "the store at ", where(), " chose a cipher this process did not offer; refusing it");
      const std::string transcript = hello_body + challenge_body;
      Message answer = make(MessageType::client_proof);
      answer.proof = auth::proof(key, auth::kClientLabel, transcript);
      net::send_message(fd.get(), answer, deadline);
      const Message verdict = parse(net::recv_frame(fd.get(), deadline, protocol::kMaxReasonBytes + 64, prefix));
      if (verdict.type == MessageType::auth_fail) refused(verdict.text);
      DTRAIN_CHECK(verdict.type == MessageType::auth_ok, "unexpected handshake reply from the store at ", where());
      // Mutual: the server must hold the token too, or it is not our job's store.
      DTRAIN_CHECK(auth::verify(key, auth::kServerLabel, transcript + answer.proof, verdict.proof), "the store at ",
                   where(), " could not prove it holds this job's DTRAIN_AUTH_TOKEN; refusing it");
      const session::SessionKeys keys = session::derive_session_keys(key, transcript);
      tx = std::make_unique<session::Channel>(challenge.ciphers, keys.client_to_server);
      rx = std::make_unique<session::Channel>(challenge.ciphers, keys.server_to_client);
    } catch (const net::ConnectionClosed& e) {
      DTRAIN_THROW("the store at ", where(), " closed the connection during authentication (", e.what(),
                   "); it most likely refused this process's DTRAIN_AUTH_TOKEN");
    } catch (const protocol::ProtocolError& e) {
      DTRAIN_THROW("the store at ", where(), " sent a malformed handshake message (", e.what(), ")");
    }
  }

  static Message parse(const std::string& body) {
    return protocol::parse_body(reinterpret_cast<const uint8_t*>(body.data()), body.size());
  }

  [[noreturn]] void refused(const std::string& reason) {
    DTRAIN_THROW("the store at ", where(), " refused this process: ", reason,
                 ". Set DTRAIN_AUTH_TOKEN to the same secret on every rank");
  }

  // Closes the connection; with say_bye, first tells the server (sealed) that
  // this is no death, so it does not mark the rank lost.
  void drop(bool say_bye) {
    if (say_bye && fd.valid() && tx) {
      try {
        net::write_all(fd.get(), tx->seal(protocol::encode_body(make(MessageType::bye))).data(),
                       4 + 1 + session::kTagBytes, net::deadline_after(std::chrono::milliseconds(200)));
      } catch (const std::exception&) {
      }
    }
    fd.reset();
    tx.reset();
    rx.reset();
  }

  // A reply that does not open, or a connection that breaks, may be an
  // attacker on the path rather than a dead store: reconnect (fresh keys) and
  // retry, a bounded number of times. Adds carry a request id, so a retried
  // add is answered, not applied twice.
  Message request(const Message& req) {
    std::lock_guard<std::mutex> lock(mutex);
    const auto deadline = net::deadline_after(options.timeout);
    std::string reason;
    for (int attempt = 0; attempt < 3; ++attempt) {
      try {
        if (!fd.valid()) reconnect(reason);
        const std::string frame = tx->seal(protocol::encode_body(req));
        net::write_all(fd.get(), frame.data(), frame.size(), deadline);
        uint8_t prefix[4];
        std::string body = net::recv_frame(fd.get(), deadline, protocol::kMaxBodyBytes + session::kTagBytes, prefix);
        if (!rx->open(prefix, reinterpret_cast<uint8_t*>(body.data()), body.size())) {
          reason = "a reply failed authentication (tampered, replayed or forged on the way)";
          drop(true);
          continue;
        }
        body.resize(body.size() - session::kTagBytes);
        Message reply = parse(body);
        if (reply.type == MessageType::error) DTRAIN_THROW("store error: ", reply.text);
        return reply;
      } catch (const net::ConnectionClosed& e) {
        reason = e.what();
        drop(false);
      } catch (const protocol::ProtocolError& e) {
        reason = std::string("malformed reply: ") + e.what();
        drop(true);
      }
    }
    DTRAIN_THROW("lost the connection to the store at ", where(), " (", reason,
                 "); rank 0 hosts the store: it has most likely exited or been killed");
  }

  void reconnect(const std::string& reason) {
    std::fprintf(stderr, "[dtrain rank %d] store connection to %s broke (%s); reconnecting\n", options.rank,
                 where().c_str(), reason.c_str());
    std::fflush(stderr);
    try {
      fd = net::connect_once(options.host, port, net::deadline_after(kHandshakeTimeout));
      handshake(net::deadline_after(std::min<std::chrono::milliseconds>(options.timeout, kHandshakeTimeout)));
    } catch (const std::exception& e) {
      drop(false);
      DTRAIN_THROW("lost the connection to the store at ", where(), " (", reason, "; reconnecting failed: ", e.what(),
                   "); rank 0 hosts the store: it has most likely exited or been killed");
    }
  }
};

TcpStore::TcpStore(TcpStoreOptions options) : Store(options.timeout), impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  auto& o = impl_->options;
  DTRAIN_CHECK(o.port >= 0 && o.port < 65536, "TcpStore port must be in [0, 65535], got ", o.port);
  impl_->token = token_or_env(o.auth_token);
  auth::check_token_strength(impl_->token);
  impl_->key = auth::derive_key(impl_->token);
  if (o.is_server) {
    impl_->server = std::make_unique<StoreServer>(o.host, o.port, o.bind_all_interfaces, impl_->token);
    impl_->port = impl_->server->port();
  } else {
    DTRAIN_CHECK(o.port > 0, "TcpStore client needs the server's port (MASTER_PORT)");
    impl_->port = o.port;
  }
  impl_->connect_and_authenticate();
}

TcpStore::~TcpStore() {
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->drop(true);
  }
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
  m.request_id = impl_->next_request_id++;
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
