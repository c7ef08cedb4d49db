// A man in the middle for the store: a TCP relay between a rank and the
// store that forwards frames honestly through the handshake and then
// attacks each connection it carries once, in a fixed order (one attack
// per connection; the rank reconnects after each).
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "comm/socket_util.h"
#include "comm/store_keys.h"
#include "comm/store_protocol.h"

namespace dtrain::testing {

class Relay {
 public:
  enum class Attack { flip_request, replay_request, inject_request, flip_reply, none };
  static constexpr int kAttacks = 4;

  explicit Relay(int store_port, bool attack = true) : store_port_(store_port), attack_(attack) {
    listen_ = comm::net::listen_on("127.0.0.1", 0, false, &port_);
    accept_thread_ = std::thread([this] { accept_loop(); });
  }
  ~Relay() {
    stop_ = true;
    accept_thread_.join();
    for (auto& t : threads_) t.join();
  }
  int port() const { return port_; }
  int connections() const { return connections_; }
  int attacks_done() const { return attacks_done_; }

 private:
  void accept_loop() {
    while (!stop_) {
      pollfd p{listen_.get(), POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const int fd = ::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      threads_.emplace_back([this, fd] { carry(comm::net::Fd(fd)); });
    }
  }

  struct Frame {
    std::string bytes;  // prefix + body
  };
  static bool read_frame(int fd, Frame& f) {
    try {
      uint8_t prefix[4];
      const std::string body = comm::net::recv_frame(fd, comm::net::deadline_after(std::chrono::seconds(30)),
                                                     comm::protocol::kMaxBodyBytes + 64, prefix);
      f.bytes = std::string(reinterpret_cast<char*>(prefix), 4) + body;
      return true;
    } catch (const std::exception&) {
      return false;
    }
  }
  static bool write_frame(int fd, const std::string& bytes) {
    try {
      comm::net::write_all(fd, bytes.data(), bytes.size(), comm::net::deadline_after(std::chrono::seconds(30)));
      return true;
    } catch (const std::exception&) {
      return false;
    }
  }

  // Frames 0 and 1 each way are the plain handshake; later ones are sealed.
  // The attack hits the fourth sealed frame of its direction.
  // Connections that reach the store are numbered (a rank that starts before
  // the store listens makes some that do not) and the n-th gets attack n.
  void carry(comm::net::Fd down) {
    comm::net::Fd up;
    try {
      up = comm::net::connect_once("127.0.0.1", store_port_, comm::net::deadline_after(std::chrono::seconds(5)));
    } catch (const std::exception&) {
      return;
    }
    const int index = connections_++;
    const Attack attack = attack_ && index < kAttacks ? static_cast<Attack>(index) : Attack::none;
    int from_client = 0, from_server = 0;
    constexpr int kHit = 2 + 3;
    while (!stop_) {
      pollfd p[2] = {{down.get(), POLLIN, 0}, {up.get(), POLLIN, 0}};
      if (::poll(p, 2, 50) <= 0) continue;
      if (p[0].revents) {
        Frame f;
        if (!read_frame(down.get(), f)) break;
        const int i = from_client++;
        if (i == kHit && attack == Attack::flip_request) {
          f.bytes[f.bytes.size() / 2] ^= 0x20;
          ++attacks_done_;
        }
        if (i == kHit && attack == Attack::inject_request) {
          // The attack the issue saw succeed: a `set` of the poison key.
          comm::protocol::Message poison;
          poison.type = comm::protocol::MessageType::set;
          poison.key = comm::keys::kPoison;
          poison.value = "pwned by the relay";
          if (!write_frame(up.get(), comm::protocol::encode(poison))) break;
          ++attacks_done_;
        }
        if (!write_frame(up.get(), f.bytes)) break;
        if (i == kHit && attack == Attack::replay_request) {
          if (!write_frame(up.get(), f.bytes)) break;
          ++attacks_done_;
        }
      }
      if (p[1].revents) {
        Frame f;
        if (!read_frame(up.get(), f)) break;
        const int i = from_server++;
        if (i == kHit && attack == Attack::flip_reply) {
          f.bytes[f.bytes.size() - 3] ^= 0x01;
          ++attacks_done_;
        }
        if (!write_frame(down.get(), f.bytes)) break;
      }
    }
  }

  int store_port_;
  bool attack_;
  int port_ = 0;
  comm::net::Fd listen_;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::atomic<int> attacks_done_{0};
  std::thread accept_thread_;
  std::vector<std::thread> threads_;
};

}  // namespace dtrain::testing
