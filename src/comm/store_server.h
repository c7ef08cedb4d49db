// Internal: the TCP store's server, hosted by rank 0.
//
// Anything can connect to its port, so it assumes the other side is hostile
// until it has proved it holds the job key, and bounds what such a peer can
// cost: one thread serves every connection (an epoll loop over non-blocking
// sockets, no thread per connection); a peer that has not authenticated may
// send one handshake frame at a time of at most kMaxHandshakeBodyBytes and
// must finish within the handshake limit; unauthenticated connections are
// capped in all and per source address, and ones over a cap are closed at
// once; resource errors on accept (EMFILE, ENOBUFS, ...) are logged and the
// loop goes on; refusal lines are rate-limited. After authentication every
// frame is sealed (store_session.h); one that fails to open closes that
// connection, is logged, and is never acted on.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

namespace dtrain::comm {

struct StoreServerLimits {
  size_t max_unauthenticated = 64;              // connections still in their handshake, in all
  size_t max_unauthenticated_per_address = 16;  // ... from one source address
  size_t max_authenticated = 16384;             // connections of job members
  std::chrono::milliseconds handshake_timeout{5000};
};

class StoreServer {
 public:
  // Listens on host:port (port 0: any free port) and starts serving.
  StoreServer(const std::string& host, int port, bool all_interfaces, const std::string& token,
              StoreServerLimits limits = {});
  ~StoreServer();
  StoreServer(const StoreServer&) = delete;
  StoreServer& operator=(const StoreServer&) = delete;

  int port() const;
  // Waits (at most `limit`) until no authenticated client is connected, so the
  // other ranks can say goodbye before the store goes away.
  void drain(std::chrono::milliseconds limit);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dtrain::comm
