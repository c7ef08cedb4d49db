#include "comm/socket_util.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>
#include <thread>

#include "dtrain/error.h"

namespace dtrain::comm::net {

void Fd::reset() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

namespace {

// Milliseconds left until the deadline, for poll(); -1 means forever.
int poll_ms(Deadline deadline) {
  if (deadline == Deadline::max()) return -1;
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  if (left <= 0) return 0;
  return left > 1000000 ? 1000000 : static_cast<int>(left);
}

void wait_ready(int fd, short events, Deadline deadline, const char* what) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int rc = ::poll(&p, 1, poll_ms(deadline));
    if (rc > 0) return;
    if (rc == 0) DTRAIN_THROW("timed out while ", what, " on a store connection");
    if (errno != EINTR) DTRAIN_THROW("poll failed while ", what, ": ", std::strerror(errno));
  }
}

struct AddrInfo {
  addrinfo* list = nullptr;
  ~AddrInfo() {
    if (list) ::freeaddrinfo(list);
  }
};

void resolve(const std::string& host, int port, int flags, AddrInfo& out) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = flags;
  const std::string port_text = std::to_string(port);
  const int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port_text.c_str(), &hints, &out.list);
  DTRAIN_CHECK(rc == 0, "cannot resolve host '", host, "': ", ::gai_strerror(rc),
               " (check MASTER_ADDR / --master-addr)");
}

}  // namespace

void write_all(int fd, const void* data, size_t size, Deadline deadline) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::send(fd, p, size, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      p += n;
      size -= static_cast<size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      wait_ready(fd, POLLOUT, deadline, "sending");
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      throw ConnectionClosed(std::string("connection lost while sending: ") + std::strerror(errno));
    }
  }
}

void read_exact(int fd, void* data, size_t size, Deadline deadline) {
  char* p = static_cast<char*>(data);
  while (size > 0) {
    wait_ready(fd, POLLIN, deadline, "receiving");
    const ssize_t n = ::recv(fd, p, size, MSG_DONTWAIT);
    if (n > 0) {
      p += n;
      size -= static_cast<size_t>(n);
    } else if (n == 0) {
      throw ConnectionClosed("connection closed by the peer");
    } else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
      continue;
    } else {
      throw ConnectionClosed(std::string("connection lost while receiving: ") + std::strerror(errno));
    }
  }
}

void send_message(int fd, const protocol::Message& message, Deadline deadline) {
  const std::string frame = protocol::encode(message);
  write_all(fd, frame.data(), frame.size(), deadline);
}

std::string recv_frame(int fd, Deadline deadline, size_t limit, uint8_t prefix[4]) {
  read_exact(fd, prefix, 4, deadline);
  const uint32_t n = protocol::parse_length(prefix, limit);
  std::string body;
  constexpr size_t kChunk = size_t{1} << 20;
  while (body.size() < n) {
    const size_t have = body.size();
    body.resize(have + std::min<size_t>(kChunk, n - have));
    read_exact(fd, body.data() + have, body.size() - have, deadline);
  }
  return body;
}

protocol::Message recv_message(int fd, Deadline deadline) {
  uint8_t prefix[4];
  const std::string body = recv_frame(fd, deadline, protocol::kMaxBodyBytes, prefix);
  return protocol::parse_body(reinterpret_cast<const uint8_t*>(body.data()), body.size());
}

Fd listen_on(const std::string& host, int port, bool all_interfaces, int* bound_port) {
  AddrInfo ai;
  resolve(all_interfaces ? std::string() : host, port, AI_PASSIVE, ai);
  std::string last_error = "no address";
  for (addrinfo* a = ai.list; a != nullptr; a = a->ai_next) {
    Fd fd(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol));
    if (!fd.valid()) continue;
    const int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd.get(), a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd.get(), 1024) != 0) {
      last_error = std::strerror(errno);
      continue;
    }
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len);
    *bound_port = ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                                           : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    return fd;
  }
  DTRAIN_THROW("cannot listen on ", all_interfaces ? "*" : host, ":", port, ": ", last_error,
               " (is the port in use? choose another MASTER_PORT)");
}

Fd connect_once(const std::string& host, int port, Deadline deadline) {
  AddrInfo ai;
  resolve(host, port, 0, ai);
  std::string last_error = "no address";
  for (addrinfo* a = ai.list; a != nullptr; a = a->ai_next) {
    Fd fd(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol));
    if (!fd.valid()) continue;
    int rc = ::connect(fd.get(), a->ai_addr, a->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{fd.get(), POLLOUT, 0};
      rc = ::poll(&p, 1, poll_ms(deadline));
      if (rc == 1) {
        int err = 0;
        socklen_t len = sizeof(err);
        ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
          last_error = std::strerror(err);
          continue;
        }
        rc = 0;
      } else {
        last_error = "connect timed out";
        continue;
      }
    } else if (rc != 0) {
      last_error = std::strerror(errno);
      continue;
    }
    const int one = 1;
    ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
  }
  DTRAIN_THROW("cannot connect to ", host, ":", port, ": ", last_error);
}

Fd connect_with_retry(const std::string& host, int port, Deadline deadline) {
  std::mt19937_64 rng(std::random_device{}());
  auto backoff = std::chrono::milliseconds(20);
  for (;;) {
    try {
      return connect_once(host, port, std::min(deadline, Clock::now() + std::chrono::seconds(5)));
    } catch (const Error& e) {
      if (Clock::now() + backoff >= deadline) {
        DTRAIN_THROW("gave up connecting to the store at ", host, ":", port, " (", e.what(),
                     "); is rank 0 running, and are MASTER_ADDR/MASTER_PORT right? (timeout DTRAIN_TIMEOUT_S)");
      }
    }
    // Jitter spreads the reconnects of many ranks over time.
    std::uniform_int_distribution<int64_t> jitter(0, backoff.count() / 2);
    std::this_thread::sleep_for(backoff + std::chrono::milliseconds(jitter(rng)));
    backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
  }
}

std::string peer_name(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  char host[NI_MAXHOST], serv[NI_MAXSERV];
  if (::getnameinfo(reinterpret_cast<sockaddr*>(&ss), len, host, sizeof(host), serv, sizeof(serv),
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    return "?";
  return std::string(host) + ":" + serv;
}

std::string local_address_towards(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* list = nullptr;
  if (::getaddrinfo(host.c_str(), "9", &hints, &list) != 0 || list == nullptr) return "127.0.0.1";
  std::string result = "127.0.0.1";
  Fd fd(::socket(list->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (fd.valid() && ::connect(fd.get(), list->ai_addr, list->ai_addrlen) == 0) {
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    char name[NI_MAXHOST];
    if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len) == 0 &&
        ::getnameinfo(reinterpret_cast<sockaddr*>(&ss), len, name, sizeof(name), nullptr, 0, NI_NUMERICHOST) == 0)
      result = name;
  }
  ::freeaddrinfo(list);
  return result;
}

int pick_free_port(const std::string& host) {
  int port = 0;
  Fd fd = listen_on(host, 0, false, &port);
  return port;
}

}  // namespace dtrain::comm::net
