// Failure translation: evidence about the peers -> one message (see
// failure_report.h for the contract).
#include "comm/failure_report.h"

#include <cstdio>
#include <sstream>
#include <vector>

namespace dtrain::comm {

namespace {

std::string seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f", s);
  return buf;
}

struct Blame {
  std::vector<std::string> clauses;
  std::string advice;
  void add(const std::string& clause, const std::string& what_to_do) {
    clauses.push_back(clause);
    if (advice.empty()) advice = what_to_do;
  }
};

const char* const kDiedAdvice =
    "read that rank's own output and its host's kernel log (OOM killer, segfault), then restart the job from its last "
    "checkpoint";
const char* const kSilentAdvice =
    "that rank's process is stopped (SIGSTOP, a debugger), frozen (swapping, a hung file system) or cut off from the "
    "network; check its host and the network between hosts, then restart the job";
const char* const kLeftAdvice =
    "that rank returned or exited before the others finished: every rank must run the same collectives in the same "
    "order (DTRAIN_DEBUG_COLLECTIVES=1 checks this)";
const char* const kLateAdvice =
    "that rank is alive but busy outside communication (its training step, data loading, a deadlock in the program) "
    "or skipped this collective; every rank must call the same collectives in the same order "
    "(DTRAIN_DEBUG_COLLECTIVES=1 checks this); raise DTRAIN_TIMEOUT_S if it is only slow";

std::string where(const PeerView& p) {
  if (!p.running.empty() && p.running != "-") return "last seen in " + p.running;
  return "last seen between collectives, after #" + std::to_string(p.entered);
}

// Ranks that died, left or went silent: facts that hold whatever the op.
// While the store itself is silent nobody's heartbeat can arrive, so only
// the store host is blamed then.
void blame_liveness(const Evidence& e, int self, double stale_s, Blame& b) {
  // The store host is rank 0 of the job; its death shows as the store going away.
  const bool store_silent = !e.store_lost && e.store_silent_s >= stale_s;
  if (e.store_lost) {
    b.add("rank 0 died (the store it hosts dropped this rank's connection)", kDiedAdvice);
  } else if (store_silent) {
    b.add("rank 0 is unresponsive (the store it hosts has not answered for " + seconds(e.store_silent_s) + " s)",
          kSilentAdvice);
  }
  for (const auto& p : e.peers) {
    if (p.rank == self) continue;
    const std::string who = "rank " + std::to_string(p.rank);
    // A rank that announced its exit also drops its store connection
    // without a goodbye when the process ends: "left" is the better account.
    if (p.left_after) {
      b.add(who + " left the job (it shut its communicator down or exited after collective #" +
                std::to_string(*p.left_after) + " without a failure)",
            kLeftAdvice);
    } else if (p.lost) {
      b.add(who + " died (the store host saw its connection drop without a goodbye)", kDiedAdvice);
    } else if (!store_silent && !e.store_lost && p.heartbeat_seen && p.silent_s >= stale_s) {
      b.add(who + " is unresponsive (no heartbeat for " + seconds(p.silent_s) + " s, " + where(p) + ")", kSilentAdvice);
    }
  }
}

// Collective only: who had not entered it, or, if everybody had, the network.
void blame_progress(const FailureContext& c, const Evidence& e, int self, Blame& b) {
  if (!e.peers_read) return;
  bool all_in = true;
  for (const auto& p : e.peers) {
    if (p.rank == self) continue;
    if (!p.heartbeat_seen) {
      all_in = false;
      continue;
    }
    if (p.entered < c.sequence) {
      all_in = false;
      b.add("rank " + std::to_string(p.rank) + " did not arrive (it is alive, heartbeat " + seconds(p.silent_s) +
                " s ago, but last entered collective #" + std::to_string(p.entered) + ")",
            kLateAdvice);
    }
  }
  if (all_in && b.clauses.empty())
    b.add("every rank entered it and is alive (heartbeats), so the transport between ranks stalled",
          "check the network between the hosts (or DTRAIN_GLOO_ADDR), and raise DTRAIN_TIMEOUT_S on a slow network");
}

}  // namespace

bool evidence_blames_someone(const Evidence& e, int self, double unresponsive_after_s) {
  Blame b;
  blame_liveness(e, self, unresponsive_after_s, b);
  return !b.clauses.empty() || !e.poison.empty();
}

std::string translate_failure(const FailureContext& c, const Evidence& e, double unresponsive_after_s) {
  Blame b;
  blame_liveness(e, c.rank, unresponsive_after_s, b);
  if (b.clauses.empty() && c.is_collective && c.kind == FailureKind::timeout) blame_progress(c, e, c.rank, b);
  if (b.clauses.empty() && !c.is_collective && c.peer >= 0 && c.kind == FailureKind::timeout)
    b.add("rank " + std::to_string(c.peer) + " did not arrive (it did not post the matching " +
              (c.op.rfind("send", 0) == 0 ? "recv" : "send") + ")",
          kLateAdvice);
  const std::string& poison = c.kind == FailureKind::poisoned ? c.cause : e.poison;
  if (b.clauses.empty() && !poison.empty())
    b.add("another rank failed first and said so in the job's poison key: \"" + poison + "\"",
          "see that rank's report above; it names the rank to blame");

  std::ostringstream os;
  os << c.op;
  if (c.kind == FailureKind::timeout)
    os << " timed out after " << seconds(c.timeout_s) << " s on rank " << c.rank;
  else
    os << " failed on rank " << c.rank;
  os << ": ";
  if (b.clauses.empty()) {
    os << "no rank can be blamed yet (every peer still has a heartbeat and the store answers)";
    b.advice = "look for an error on the other ranks; if none, the network between hosts dropped the connection";
  }
  for (size_t i = 0; i < b.clauses.size(); ++i) os << (i ? "; " : "") << b.clauses[i];
  os << ". What to do: " << b.advice << ".";
  if (c.kind == FailureKind::timeout)
    os << " Cause: no progress within DTRAIN_TIMEOUT_S=" << seconds(c.timeout_s) << " s (dtrain's watchdog)";
  else if (c.kind == FailureKind::transport_error && !c.cause.empty())
    os << " Cause: " << c.cause;
  if (!e.store_error.empty() && (e.store_lost || e.store_silent_s > 0)) os << " (store: " << e.store_error << ")";
  return os.str();
}

}  // namespace dtrain::comm
