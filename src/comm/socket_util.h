// Internal: small POSIX socket helpers for the TCP store (blocking sockets,
// every read and write bounded by a deadline through poll()).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "comm/store_protocol.h"

namespace dtrain::comm::net {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;
inline Deadline no_deadline() {
  return Deadline::max();
}
inline Deadline deadline_after(std::chrono::milliseconds d) {
  return Clock::now() + d;
}

// Owns a file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = o.release();
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() {
    const int f = fd_;
    fd_ = -1;
    return f;
  }
  void reset();

 private:
  int fd_ = -1;
};

// Thrown when the peer closed the connection or it broke.
class ConnectionClosed : public std::runtime_error {
 public:
  explicit ConnectionClosed(const std::string& what) : std::runtime_error(what) {}
};

// Writes all bytes; throws ConnectionClosed or dtrain::Error (timeout).
void write_all(int fd, const void* data, size_t size, Deadline deadline);
// Reads exactly size bytes; throws ConnectionClosed (EOF/reset) or dtrain::Error (timeout).
void read_exact(int fd, void* data, size_t size, Deadline deadline);

void send_message(int fd, const protocol::Message& message, Deadline deadline);
// Reads one frame; throws protocol::ProtocolError for malformed/oversized frames.
protocol::Message recv_message(int fd, Deadline deadline);
// Reads one frame's length prefix (into `prefix`) and body, refusing bodies
// over `limit` before allocating. The body grows as bytes arrive, so a peer
// that only declares a large frame costs nothing.
std::string recv_frame(int fd, Deadline deadline, size_t limit, uint8_t prefix[4]);

// Listening socket on host:port (port 0 = any free port). Returns the fd and
// writes the bound port.
Fd listen_on(const std::string& host, int port, bool all_interfaces, int* bound_port);
// One connection attempt; throws dtrain::Error (message says why).
Fd connect_once(const std::string& host, int port, Deadline deadline);
// Connects, retrying refused/unreachable attempts with exponential backoff and
// jitter until the deadline.
Fd connect_with_retry(const std::string& host, int port, Deadline deadline);
// "ip:port" of the peer of a connected socket.
std::string peer_name(int fd);
// The local IP address this host uses to reach `host` (for Gloo's listening
// address): connects a UDP socket (no packet is sent) and reads its name.
std::string local_address_towards(const std::string& host);
// A port that was free when asked (bind to port 0, read it, close).
int pick_free_port(const std::string& host = "127.0.0.1");

}  // namespace dtrain::comm::net
