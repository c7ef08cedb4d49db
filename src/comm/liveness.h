// Internal: liveness, kept apart from progress.
//
// A collective that makes no progress says nothing about why: a peer may be
// dead, stopped, cut off, or alive but busy elsewhere. Each communicator runs
// one liveness thread that, through the store and never on the training
// thread:
//  - writes this rank's heartbeat ("hb/<rank>": a counter, the last
//    collective it entered and what it is running now) every period;
//  - polls the job's poison key and publishes this rank's own failure there;
//  - reads every peer's heartbeat, lost and left keys while a collective is
//    late, after a poison, or on request, so that a failure can say which
//    rank died, stopped answering or did not arrive, and how that is known;
//  - notes when the store itself stops answering (its host, rank 0, is
//    stopped or cut off) without ever making the watchdog wait for it.
// The thread may block inside a store request (a frozen store host); every
// other thread reads its last Evidence without waiting.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dtrain/comm/store.h"

namespace dtrain::comm {

// What this rank last learnt about one peer.
struct PeerView {
  int rank = 0;
  bool lost = false;                   // the store host saw its connection drop without a goodbye
  std::optional<uint64_t> left_after;  // it shut its communicator down after this collective
  bool heartbeat_seen = false;
  uint64_t entered = 0;  // last collective it entered, from its heartbeat
  std::string running;   // what it ran at its last heartbeat ("all_reduce #7"), empty when idle
  double silent_s = 0;   // seconds since its heartbeat last changed, as seen from here
};

struct Evidence {
  std::vector<PeerView> peers;  // indexed by rank; this rank's entry is left default
  std::string poison;           // the job's poison key ("" while unset)
  bool store_lost = false;      // the connection to the store dropped
  std::string store_error;      // the store's own error text, if any
  double store_silent_s = 0;    // how long the pending store request has waited (0: none)
  bool peers_read = false;      // peers were read at least once
};

// What this rank is doing, for its heartbeat.
struct LocalStatus {
  uint64_t entered = 0;
  std::string running;
};

struct LivenessOptions {
  int rank = 0;
  int size = 1;
  std::vector<int> global_ranks;  // communicator rank -> job rank (for the lost keys)
  std::chrono::milliseconds timeout{300000};
  std::function<LocalStatus()> status;                      // called on the liveness thread
  std::function<void(const std::string& poison)> poisoned;  // called on the liveness thread
  std::function<void(Store& store)> each_period;            // extra work per period (stragglers)
};

class Liveness {
 public:
  Liveness(std::shared_ptr<Store> comm_store, std::shared_ptr<Store> job_store, LivenessOptions options);
  // Bounded: waits at most half a second for the thread, then lets it finish alone.
  ~Liveness();
  Liveness(const Liveness&) = delete;
  Liveness& operator=(const Liveness&) = delete;

  // Heartbeat period and the silence after which a peer counts as unresponsive.
  std::chrono::milliseconds period() const;
  double unresponsive_after_s() const;

  // The last evidence gathered; never blocks on the store.
  Evidence snapshot() const;
  // Asks for a fresh read of every peer and waits at most `limit` for it.
  Evidence refresh(std::chrono::milliseconds limit);
  // Read peers every period while on (a collective is late).
  void watch(bool on);
  // Writes `reason` to the job's poison key unless set (asynchronously).
  void publish_poison(const std::string& reason);
  // This rank's communicator shut down cleanly after collective #seq (bounded wait).
  void publish_left(uint64_t seq);

  struct State;

 private:
  std::shared_ptr<State> state_;
};

// Every rank writes "<name>/<rank>" and waits for all: a rendezvous that, on
// timeout, names the ranks that never arrived instead of a store key.
void arrive_and_wait(Store& store, const std::string& name, int rank, int size, std::chrono::milliseconds timeout,
                     const std::string& what);

}  // namespace dtrain::comm
