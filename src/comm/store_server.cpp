// The TCP store's server: one epoll loop over non-blocking sockets (see
// store_server.h for what it bounds and why).
//
// Connection life: hello -> challenge -> client proof -> auth_ok carrying the
// server's proof, all plain frames of at most kMaxHandshakeBodyBytes; then
// sealed requests until bye. A connection that drops without bye after
// naming its rank marks that rank lost and poisons the store, which is how
// the other ranks learn of a dead peer; one closed because a frame failed to
// open does not (the process behind it is alive and reconnects).
#include "comm/store_server.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <thread>
#include <unordered_map>
#include <vector>

#include "comm/socket_util.h"
#include "comm/store_auth.h"
#include "comm/store_keys.h"
#include "comm/store_protocol.h"
#include "comm/store_session.h"
#include "dtrain/error.h"

namespace dtrain::comm {

namespace {

using protocol::Message;
using protocol::MessageType;
using Clock = std::chrono::steady_clock;

Message make(MessageType type) {
  Message m;
  m.type = type;
  return m;
}

// Prints at most kBurst lines per window and then one line saying how many
// were left out, so a flood of refused connections cannot flood the log.
class RateLimitedLog {
 public:
  void line(const std::string& text) {
    roll();
    if (printed_ < kBurst) {
      ++printed_;
      std::fprintf(stderr, "[dtrain store] %s\n", text.c_str());
      std::fflush(stderr);
    } else {
      ++left_out_;
    }
  }
  void roll() {
    const auto now = Clock::now();
    if (now - window_start_ < kWindow) return;
    if (left_out_ > 0) {
      std::fprintf(stderr, "[dtrain store] ... %zu more such lines left out in the last %lld s\n", left_out_,
                   static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(kWindow).count()));
      std::fflush(stderr);
    }
    window_start_ = now;
    printed_ = 0;
    left_out_ = 0;
  }

 private:
  static constexpr size_t kBurst = 20;
  static constexpr std::chrono::seconds kWindow{10};
  Clock::time_point window_start_ = Clock::now();
  size_t printed_ = 0;
  size_t left_out_ = 0;
};

std::string numeric_host(const sockaddr_storage& ss, socklen_t len, bool with_port) {
  char host[NI_MAXHOST], serv[NI_MAXSERV];
  if (::getnameinfo(reinterpret_cast<const sockaddr*>(&ss), len, host, sizeof(host), serv, sizeof(serv),
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    return "?";
  return with_port ? std::string(host) + ":" + serv : std::string(host);
}

// Closes with a reset: the kernel frees the connection at once instead of
// keeping it in TIME_WAIT on our side.
void close_now(int fd) {
  linger l{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  ::close(fd);
}

}  // namespace

struct StoreServer::Impl {
  enum class State { hello, proof, open };

  struct Conn {
    net::Fd fd;
    std::string peer;    // ip:port, for log lines
    std::string source;  // ip, for the per-address cap
    State state = State::hello;
    Clock::time_point deadline;
    int rank = -1;
    std::string client_id;
    std::string transcript;  // hello body + challenge body
    std::unique_ptr<session::Channel> rx, tx;
    std::string in;   // received, not yet consumed
    std::string out;  // to send
    size_t out_sent = 0;
    uint8_t cipher = 0;
    uint32_t interest = 0;
    bool peer_closed = false;
  };

  // What becomes of a connection after an event. Only `eof` (the peer went
  // away without bye) marks an authenticated rank lost; `dropped` closes with
  // a reset (refused over a cap, handshake too slow), the others gracefully.
  enum class End { keep, eof, said_bye, bad_frame, refused, dropped, error };

  Impl(const std::string& host, int port, bool all_interfaces, const std::string& token, StoreServerLimits l)
      : limits(l), key(auth::derive_key(token)) {
    listen_fd = net::listen_on(host, port, all_interfaces, &bound_port);
    const int flags = ::fcntl(listen_fd.get(), F_GETFL);
    DTRAIN_CHECK(flags >= 0 && ::fcntl(listen_fd.get(), F_SETFL, flags | O_NONBLOCK) == 0,
                 "store: cannot make the listening socket non-blocking: ", std::strerror(errno));
    epoll = net::Fd(::epoll_create1(EPOLL_CLOEXEC));
    DTRAIN_CHECK(epoll.valid(), "store: epoll_create1 failed: ", std::strerror(errno));
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = listen_fd.get();
    DTRAIN_CHECK(::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, listen_fd.get(), &ev) == 0,
                 "store: cannot watch the listening socket: ", std::strerror(errno));
    loop_thread = std::thread([this] { loop(); });
  }

  ~Impl() {
    stop = true;
    if (loop_thread.joinable()) loop_thread.join();
  }

  // ---- the loop ----------------------------------------------------------------

  void loop() {
    std::vector<epoll_event> events(256);
    while (!stop) {
      const int n = ::epoll_wait(epoll.get(), events.data(), static_cast<int>(events.size()), 100);
      if (n < 0 && errno != EINTR) {
        log.line(std::string("epoll_wait failed: ") + std::strerror(errno) + "; still serving");
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      for (int i = 0; i < n; ++i) {
        const int fd = events[i].data.fd;
        try {
          if (fd == listen_fd.get())
            accept_ready();
          else
            serve(fd, events[i].events);
        } catch (const std::exception& e) {  // bad_alloc, a failed syscall: end that connection, keep serving
          log.line(std::string("error while serving a connection: ") + e.what() + "; closing it, still serving");
          if (fd != listen_fd.get()) end(fd, End::error);
        }
      }
      housekeeping();
    }
    for (auto& [fd, c] : conns) c->fd.reset();
    conns.clear();
  }

  void housekeeping() {
    const auto now = Clock::now();
    if (accept_paused && now >= resume_accept_at) {
      accept_paused = false;
      watch_listener(EPOLLIN);
    }
    std::vector<int> expired;
    for (const auto& [fd, c] : conns)
      if (c->state != State::open && now >= c->deadline) expired.push_back(fd);
    for (int fd : expired) {
      log.line("closed connection from " + conns[fd]->peer + ": handshake not finished within " +
               std::to_string(limits.handshake_timeout.count()) + " ms");
      end(fd, End::dropped);
    }
    log.roll();
  }

  void watch_listener(uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = listen_fd.get();
    ::epoll_ctl(epoll.get(), EPOLL_CTL_MOD, listen_fd.get(), &ev);
  }

  void accept_ready() {
    for (int i = 0; i < 64 && !stop; ++i) {
      sockaddr_storage ss{};
      socklen_t len = sizeof(ss);
      const int fd = ::accept4(listen_fd.get(), reinterpret_cast<sockaddr*>(&ss), &len, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
        // EMFILE, ENFILE, ENOBUFS, ENOMEM...: the connection waits in the
        // backlog; stop watching the listener briefly so the loop does not spin.
        log.line(std::string("accept failed: ") + std::strerror(errno) +
                 "; still serving the connected ranks, accepting again in 100 ms");
        accept_paused = true;
        resume_accept_at = Clock::now() + std::chrono::milliseconds(100);
        watch_listener(0);
        return;
      }
      const std::string source = numeric_host(ss, len, false);
      const std::string peer = numeric_host(ss, len, true);
      size_t& from_source = unauthenticated_by_source[source];
      if (unauthenticated >= limits.max_unauthenticated || from_source >= limits.max_unauthenticated_per_address) {
        const bool total = unauthenticated >= limits.max_unauthenticated;
        if (from_source == 0) unauthenticated_by_source.erase(source);
        close_now(fd);
        log.line(
            "refused connection from " + peer + ": too many connections that have not authenticated (" +
            (total ? std::to_string(unauthenticated) + " in all" : std::to_string(from_source) + " from " + source) +
            ")");
        continue;
      }
      auto c = std::make_unique<Conn>();
      c->fd = net::Fd(fd);
      c->peer = peer;
      c->source = source;
      c->deadline = Clock::now() + limits.handshake_timeout;
      const int one = 1;  // replies are small: never hold them back (Nagle)
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.fd = fd;
      if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
        log.line("cannot watch connection from " + peer + ": " + std::strerror(errno) + "; closed it");
        if (from_source == 0) unauthenticated_by_source.erase(source);
        return;  // c closes the fd
      }
      c->interest = EPOLLIN;
      ++unauthenticated;
      ++from_source;
      conns[fd] = std::move(c);
    }
  }

  // ---- one connection ------------------------------------------------------------

  void serve(int fd, uint32_t events) {
    auto it = conns.find(fd);
    if (it == conns.end()) return;
    Conn& c = *it->second;
    if ((events & EPOLLOUT) && !flush(c)) return end(fd, End::eof);
    if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && c.out.empty()) read_some(c);
    End verdict = process(c);
    // Frames that arrived before the peer closed are handled first (a bye, say).
    if (verdict == End::keep && c.peer_closed) verdict = End::eof;
    if (verdict != End::keep) return end(fd, verdict);
    update_interest(c);
  }

  // Appends what has arrived to c.in (a bounded amount per event); sets
  // c.peer_closed on EOF or a broken connection.
  void read_some(Conn& c) {
    // Before authentication nothing beyond one handshake frame is buffered.
    constexpr size_t kHandshakeFrame = 4 + protocol::kMaxHandshakeBodyBytes;
    const size_t cap = c.state == State::open          ? size_t{256} << 10
                       : c.in.size() < kHandshakeFrame ? kHandshakeFrame - c.in.size()
                                                       : 0;
    size_t total = 0;
    char chunk[64 << 10];
    while (total < cap) {
      const ssize_t n = ::recv(c.fd.get(), chunk, std::min(sizeof(chunk), cap - total), MSG_DONTWAIT);
      if (n > 0) {
        c.in.append(chunk, static_cast<size_t>(n));
        total += static_cast<size_t>(n);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return;
      } else {
        c.peer_closed = true;
        return;
      }
    }
  }

  // Sends what is queued; false when the connection broke.
  bool flush(Conn& c) {
    while (c.out_sent < c.out.size()) {
      const ssize_t n =
          ::send(c.fd.get(), c.out.data() + c.out_sent, c.out.size() - c.out_sent, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        c.out_sent += static_cast<size_t>(n);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return true;
      } else {
        return false;
      }
    }
    c.out.clear();
    c.out_sent = 0;
    return true;
  }

  void queue(Conn& c, std::string frame) {
    if (c.out.empty())
      c.out = std::move(frame);
    else
      c.out += frame;
  }

  void update_interest(Conn& c) {
    const uint32_t want = c.out.empty() ? EPOLLIN : EPOLLOUT;
    if (want == c.interest) return;
    epoll_event ev{};
    ev.events = want;
    ev.data.fd = c.fd.get();
    ::epoll_ctl(epoll.get(), EPOLL_CTL_MOD, c.fd.get(), &ev);
    c.interest = want;
  }

  // Handles every complete frame in c.in while nothing waits to be sent.
  End process(Conn& c) {
    while (c.out.empty() && c.in.size() >= 4) {
      const auto* prefix = reinterpret_cast<const uint8_t*>(c.in.data());
      const size_t limit =
          c.state == State::open ? protocol::kMaxBodyBytes + session::kTagBytes : protocol::kMaxHandshakeBodyBytes;
      uint32_t n = 0;
      try {
        n = protocol::parse_length(prefix, limit);
      } catch (const protocol::ProtocolError& e) {
        log.line("closing connection from " + c.peer + who(c) + ": " + e.what());
        return c.state == State::open ? End::error : End::dropped;
      }
      if (c.in.size() < 4 + size_t{n}) break;
      End verdict = End::keep;
      try {
        auto* body = reinterpret_cast<uint8_t*>(c.in.data()) + 4;
        switch (c.state) {
          case State::hello:
            verdict = on_hello(c, body, n);
            break;
          case State::proof:
            verdict = on_proof(c, body, n);
            break;
          case State::open:
            verdict = on_sealed(c, prefix, body, n);
            break;
        }
      } catch (const protocol::ProtocolError& e) {
        log.line("closing connection from " + c.peer + who(c) + ": malformed message: " + e.what());
        verdict = c.state == State::open ? End::error : End::dropped;
      }
      c.in.erase(0, 4 + size_t{n});
      if (verdict != End::keep) return verdict;
      if (!c.out.empty() && !flush(c)) return End::eof;
    }
    return End::keep;
  }

  static std::string who(const Conn& c) {
    return c.state == State::open ? " (rank " + std::to_string(c.rank) + ")" : "";
  }

  End refuse(Conn& c, const std::string& reason) {
    log.line("refused connection from " + c.peer + ": " + reason);
    Message fail = make(MessageType::auth_fail);
    fail.text = reason;
    const std::string frame = protocol::encode(fail);
    (void)::send(c.fd.get(), frame.data(), frame.size(), MSG_NOSIGNAL | MSG_DONTWAIT);  // best effort, never waits
    return End::refused;
  }

  End on_hello(Conn& c, const uint8_t* body, size_t n) {
    const Message hello = protocol::parse_body(body, n);
    if (hello.type != MessageType::client_hello) return refuse(c, "expected a hello message first");
    if (hello.version != protocol::kVersion)
      return refuse(c, "protocol version " + std::to_string(hello.version) + ", this store speaks " +
                           std::to_string(protocol::kVersion) + " (different dtrain versions?)");
    Message challenge = make(MessageType::server_challenge);
    challenge.nonce = auth::random_nonce();
    challenge.ciphers = session::choose_cipher(hello.ciphers);
    if (challenge.ciphers == 0) return refuse(c, "no cipher in common with this store");
    const std::string challenge_body = protocol::encode_body(challenge);
    c.transcript = std::string(reinterpret_cast<const char*>(body), n) + challenge_body;
    c.rank = hello.rank;
    c.client_id = hello.client_id;
    c.cipher = challenge.ciphers;
    c.state = State::proof;
    queue(c, protocol::length_prefix(static_cast<uint32_t>(challenge_body.size())) + challenge_body);
    return End::keep;
  }

  End on_proof(Conn& c, const uint8_t* body, size_t n) {
    const Message answer = protocol::parse_body(body, n);
    if (answer.type != MessageType::client_proof || !auth::verify(key, auth::kClientLabel, c.transcript, answer.proof))
      return refuse(
          c, "authentication failed (claims rank " + std::to_string(c.rank) + "): wrong or missing DTRAIN_AUTH_TOKEN");
    if (authenticated >= limits.max_authenticated)
      return refuse(c, "too many connections (" + std::to_string(authenticated) + ")");
    Message ok = make(MessageType::auth_ok);
    ok.proof = auth::proof(key, auth::kServerLabel, c.transcript + answer.proof);
    const session::SessionKeys keys = session::derive_session_keys(key, c.transcript);
    c.rx = std::make_unique<session::Channel>(c.cipher, keys.client_to_server);
    c.tx = std::make_unique<session::Channel>(c.cipher, keys.server_to_client);
    c.state = State::open;
    leave_unauthenticated(c);
    ++authenticated;
    queue(c, protocol::encode(ok));
    return End::keep;
  }

  End on_sealed(Conn& c, const uint8_t* prefix, uint8_t* body, size_t n) {
    if (!c.rx->open(prefix, body, n)) {
      log.line("closing connection from " + c.peer + who(c) + ": frame #" + std::to_string(c.rx->frames()) +
               " failed authentication (tampered, replayed, reordered or forged); not acted on");
      return End::bad_frame;
    }
    const Message req = protocol::parse_body(body, n - session::kTagBytes);
    if (req.type == MessageType::bye) return End::said_bye;
    queue(c, c.tx->seal(protocol::encode_body(handle(c, req))));
    return End::keep;
  }

  void leave_unauthenticated(Conn& c) {
    --unauthenticated;
    auto it = unauthenticated_by_source.find(c.source);
    if (it != unauthenticated_by_source.end() && --it->second == 0) unauthenticated_by_source.erase(it);
  }

  void end(int fd, End why) {
    auto it = conns.find(fd);
    if (it == conns.end()) return;
    Conn& c = *it->second;
    if (c.state == State::open) {
      --authenticated;
      if (why == End::eof && !stop && c.rank >= 0) mark_lost(c.rank, c.peer);
    } else {
      leave_unauthenticated(c);
    }
    if (why == End::dropped)
      close_now(c.fd.release());
    else
      c.fd.reset();
    conns.erase(it);
  }

  // ---- the key/value data ----------------------------------------------------------

  void mark_lost(int rank, const std::string& peer) {
    data[keys::lost(rank)] = "1";
    if (data.count(keys::kPoison) == 0) {
      data[keys::kPoison] = "rank " + std::to_string(rank) + " (" + peer +
                            ") disconnected from the store without shutting down: the process died or was killed";
      std::fprintf(stderr, "[dtrain store] rank %d (%s) disconnected without shutting down; marking the job failed\n",
                   rank, peer.c_str());
      std::fflush(stderr);
    }
  }

  Message handle(const Conn& c, const Message& req) {
    switch (req.type) {
      case MessageType::set:
        data[req.key] = req.value;
        if (req.key == keys::kPoison) poisoned = true;
        return make(MessageType::ok);
      case MessageType::get: {
        Message r = make(MessageType::value);
        auto it = data.find(req.key);
        r.found = it != data.end();
        if (r.found) r.value = it->second;
        return r;
      }
      case MessageType::add:
        return add(c, req);
      case MessageType::check: {
        Message r = make(MessageType::boolean);
        r.found = true;
        for (const auto& k : req.keys) r.found = r.found && data.count(k) > 0;
        return r;
      }
      case MessageType::delete_key: {
        Message r = make(MessageType::boolean);
        r.found = data.erase(req.key) > 0;
        return r;
      }
      default:
        throw protocol::ProtocolError(std::string("unexpected request type ") + protocol::message_type_name(req.type));
    }
  }

  // A client that lost its connection retries its add with the same request
  // id; the answer is repeated, not the addition.
  Message add(const Conn& c, const Message& req) {
    Message r = make(MessageType::number);
    auto& last = last_add[c.client_id];
    if (req.request_id != 0 && last.first == req.request_id) {
      r.number = last.second;
      return r;
    }
    int64_t current = 0;
    auto it = data.find(req.key);
    if (it != data.end()) {
      try {
        current = std::stoll(it->second);
      } catch (const std::exception&) {
        Message e = make(MessageType::error);
        e.text = "add on key '" + req.key + "' whose value is not an integer";
        return e;
      }
    }
    current += req.number;
    data[req.key] = std::to_string(current);
    last = {req.request_id, current};
    r.number = current;
    return r;
  }

  StoreServerLimits limits;
  std::string key;
  net::Fd listen_fd;
  int bound_port = 0;
  net::Fd epoll;
  std::atomic<bool> stop{false};
  std::thread loop_thread;
  RateLimitedLog log;
  bool accept_paused = false;
  Clock::time_point resume_accept_at;
  std::unordered_map<int, std::unique_ptr<Conn>> conns;
  size_t unauthenticated = 0;
  std::map<std::string, size_t> unauthenticated_by_source;
  std::atomic<size_t> authenticated{0};
  std::atomic<bool> poisoned{false};  // the job failed: drain() waits less
  std::map<std::string, std::string> data;
  std::map<std::string, std::pair<uint64_t, int64_t>> last_add;  // client id -> (request id, result)
};

StoreServer::StoreServer(const std::string& host, int port, bool all_interfaces, const std::string& token,
                         StoreServerLimits limits)
    : impl_(std::make_unique<Impl>(host, port, all_interfaces, token, limits)) {}

StoreServer::~StoreServer() = default;

int StoreServer::port() const {
  return impl_->bound_port;
}

// In a failed job a stopped or cut-off rank never says goodbye: wait only
// long enough for the others to read the poison (they poll it every
// heartbeat, at most 1 s).
void StoreServer::drain(std::chrono::milliseconds limit) {
  const auto until = Clock::now() + limit;
  const auto failed_until = Clock::now() + std::chrono::seconds(2);
  while (Clock::now() < until && impl_->authenticated.load() > 0) {
    if (Clock::now() >= failed_until && impl_->poisoned.load()) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace dtrain::comm
