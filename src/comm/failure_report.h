// Internal: the one place where a failed collective becomes the message a
// user reads.
//
// However a failure surfaces (a Gloo transport error such as "Connection
// closed by peer", a Gloo or watchdog timeout, an NCCL error, a store error,
// another rank's poison), the user gets one dtrain::Error that names the
// operation and its sequence number, the rank(s) to blame with how that is
// known (store connection dropped, no heartbeat, arrival records, the poison
// key and who set it), what to do next, and only then the transport's own
// text as the cause. Tests match the blame clauses ("rank 2 died", "rank 2
// is unresponsive", "rank 2 did not arrive", "rank 2 left the job"), so keep
// those words.
#pragma once

#include <cstdint>
#include <string>

#include "comm/liveness.h"

namespace dtrain::comm {

enum class FailureKind : uint8_t {
  transport_error,  // the backend raised (Gloo, NCCL, a store request inside the op)
  timeout,          // the watchdog: no progress within DTRAIN_TIMEOUT_S
  poisoned,         // another rank (or the store host) failed the job
};

struct FailureContext {
  std::string op;  // "all_reduce #7 (f32, 10 elements, sum, cpu)"
  uint64_t sequence = 0;
  bool is_collective = true;
  int peer = -1;  // send/recv: the other rank
  int rank = 0;
  double timeout_s = 0;
  FailureKind kind = FailureKind::transport_error;
  std::string cause;  // the transport's text, or the poison
};

// True when `e` blames somebody (a rank died, left, went silent, or the store
// did): a transport error then has its explanation and need not wait longer.
bool evidence_blames_someone(const Evidence& e, int self, double unresponsive_after_s);

std::string translate_failure(const FailureContext& c, const Evidence& e, double unresponsive_after_s);

}  // namespace dtrain::comm
