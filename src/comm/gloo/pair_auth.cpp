// Gloo pair authentication (see pair_auth.h).
#include "comm/gloo/pair_auth.h"

#include <dirent.h>
#include <gloo/context.h>
#include <gloo/transport/pair.h>
#include <gloo/transport/unbound_buffer.h>
#include <netinet/in.h>
#include <sodium.h>
#include <sys/socket.h>

#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "comm/socket_util.h"
#include "comm/store_auth.h"
#include "comm/store_keys.h"
#include "dtrain/error.h"

namespace dtrain::comm {

namespace {

// Slots far from those Gloo's collectives (small) and dtrain's point-to-point
// messages (1 << 40 and up) use.
constexpr uint64_t kNonceSlot = (uint64_t{1} << 39) + 1;
constexpr uint64_t kProofSlot = (uint64_t{1} << 39) + 2;
constexpr size_t kBytes = 32;
const char* const kSecretKey = "dtrain_pair_secret";
const char* const kLabel = "dtrain-gloo-pair-v1";

bool same_endpoint(const sockaddr_storage& a, const sockaddr_storage& b) {
  if (a.ss_family != b.ss_family) return false;
  if (a.ss_family == AF_INET) {
    const auto& x = reinterpret_cast<const sockaddr_in&>(a);
    const auto& y = reinterpret_cast<const sockaddr_in&>(b);
    return x.sin_port == y.sin_port && x.sin_addr.s_addr == y.sin_addr.s_addr;
  }
  if (a.ss_family == AF_INET6) {
    const auto& x = reinterpret_cast<const sockaddr_in6&>(a);
    const auto& y = reinterpret_cast<const sockaddr_in6&>(b);
    return x.sin6_port == y.sin6_port && std::memcmp(&x.sin6_addr, &y.sin6_addr, sizeof(x.sin6_addr)) == 0;
  }
  return false;
}

// "ip:port" of whoever is connected on a pair. Gloo's headers for the tcp
// pair are not installed, but a connected pair's address() is its socket's
// local name (Gloo's Address bytes start with the sockaddr_storage): find
// the socket of this process with that name and ask for its peer.
std::string peer_address(gloo::Context& context, int peer) {
  const std::vector<char> bytes = context.getPair(peer)->address().bytes();
  if (bytes.size() < sizeof(sockaddr_storage)) return "(unknown address)";
  sockaddr_storage self{};
  std::memcpy(&self, bytes.data(), sizeof(self));
  std::string found = "(unknown address)";
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return found;
  while (dirent* entry = ::readdir(dir)) {
    const int fd = std::atoi(entry->d_name);
    if (entry->d_name[0] < '0' || entry->d_name[0] > '9' || fd == ::dirfd(dir)) continue;
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0 || !same_endpoint(ss, self)) continue;
    const std::string name = net::peer_name(fd);
    if (name != "?") {
      found = name;
      break;
    }
  }
  ::closedir(dir);
  return found;
}

std::shared_ptr<Store> root_of(std::shared_ptr<Store> store) {
  while (auto* p = dynamic_cast<PrefixStore*>(store.get())) store = p->base();
  return store;
}

std::string mac(const std::string& key, int from, int to, const std::string& from_nonce, const std::string& to_nonce) {
  return auth::proof(key, kLabel, std::to_string(from) + ">" + std::to_string(to) + ":" + from_nonce + to_nonce);
}

// Polls the job's poison key while the proofs are exchanged, and aborts every
// pending wait when it appears (a peer died, so its proof will never come).
class PoisonWatch {
 public:
  PoisonWatch(std::shared_ptr<Store> root, std::vector<gloo::transport::UnboundBuffer*> buffers)
      : root_(std::move(root)), buffers_(std::move(buffers)), thread_([this] { run(); }) {}
  ~PoisonWatch() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  std::string reason() {
    std::lock_guard<std::mutex> lock(mutex_);
    return reason_;
  }

 private:
  void run() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!cv_.wait_for(lock, std::chrono::milliseconds(200), [&] { return done_; })) {
      lock.unlock();
      std::optional<std::string> poison;
      try {
        poison = root_->try_get(keys::kPoison);
      } catch (const std::exception& e) {
        poison = std::string("the store became unreachable: ") + e.what();
      }
      lock.lock();
      if (poison) {
        reason_ = *poison;
        for (auto* b : buffers_) {
          b->abortWaitRecv();
          b->abortWaitSend();
        }
        return;
      }
    }
  }
  std::shared_ptr<Store> root_;
  std::vector<gloo::transport::UnboundBuffer*> buffers_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool done_ = false;
  std::string reason_;
  std::thread thread_;
};

}  // namespace

void authenticate_gloo_pairs(gloo::Context& context, std::shared_ptr<Store> store, int rank, int size,
                             std::chrono::milliseconds timeout) {
  if (size == 1) return;
  if (rank == 0) store->set(kSecretKey, auth::random_bytes(kBytes));
  const std::string key = auth::derive_key(store->get(kSecretKey, timeout) + kLabel);
  const std::shared_ptr<Store> root = root_of(std::move(store));

  // Two rounds (nonces, then proofs); in each, every receive is posted
  // before any send, so no pair waits on another.
  std::vector<std::string> mine(size), theirs(size, std::string(kBytes, '\0')), proofs(size, std::string(kBytes, '\0'));
  std::vector<std::string> my_proofs(size);
  std::vector<std::unique_ptr<gloo::transport::UnboundBuffer>> recvs(size), sends(size);
  std::vector<gloo::transport::UnboundBuffer*> all;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto left = [&] {
    return std::max(std::chrono::milliseconds(1),
                    std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()));
  };

  // Named now: a Gloo timeout closes every pair, and their sockets with them.
  std::vector<std::string> addresses(size);
  for (int p = 0; p < size; ++p)
    if (p != rank) addresses[p] = peer_address(context, p);
  auto fail = [&](int peer, const std::string& what) {
    DTRAIN_THROW("Gloo pair of rank ", rank, " with rank ", peer, ": the peer connected at ", addresses[peer], " ",
                 what, ". A stranger may have taken the connection meant for rank ", peer,
                 "; the job stops rather than compute with it (see docs/security.md)");
  };

  for (int round = 0; round < 2; ++round) {
    const uint64_t slot = round == 0 ? kNonceSlot : kProofSlot;
    all.clear();
    for (int p = 0; p < size; ++p) {
      if (p == rank) continue;
      std::string& in = round == 0 ? theirs[p] : proofs[p];
      recvs[p] = context.createUnboundBuffer(in.data(), in.size());
      recvs[p]->recv(p, slot);
      all.push_back(recvs[p].get());
    }
    for (int p = 0; p < size; ++p) {
      if (p == rank) continue;
      if (round == 0) {
        mine[p] = auth::random_bytes(kBytes);
      } else {
        my_proofs[p] = mac(key, rank, p, mine[p], theirs[p]);
      }
      std::string& out = round == 0 ? mine[p] : my_proofs[p];
      sends[p] = context.createUnboundBuffer(out.data(), out.size());
      sends[p]->send(p, slot);
      all.push_back(sends[p].get());
    }
    PoisonWatch watch(root, all);
    for (int p = 0; p < size; ++p) {
      if (p == rank) continue;
      bool got = false;
      try {
        got = recvs[p]->waitRecv(left());
      } catch (const std::exception& e) {
        fail(p, std::string("did not prove it holds this job's key within ") + std::to_string(timeout.count()) +
                    " ms (" + e.what() + ")");
      }
      if (!got) fail(p, "did not prove it holds this job's key before the job failed: " + watch.reason());
      if (round == 1 && sodium_memcmp(proofs[p].data(), mac(key, p, rank, theirs[p], mine[p]).data(), kBytes) != 0)
        fail(p, "answered the challenge with a wrong proof: it does not hold this job's key");
    }
    for (int p = 0; p < size; ++p) {
      if (p == rank) continue;
      try {
        if (!sends[p]->waitSend(left())) fail(p, "stopped answering before the job failed: " + watch.reason());
      } catch (const Error&) {
        throw;
      } catch (const std::exception& e) {
        fail(p, std::string("did not take this rank's challenge (") + e.what() + ")");
      }
    }
  }
}

}  // namespace dtrain::comm
