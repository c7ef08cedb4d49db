// Internal: what the public collective calls (collectives.cpp) need from the
// communicator's implementation (communicator.cpp), which stays private there.
#pragma once

#include "comm/backend.h"
#include "dtrain/comm/communicator.h"
#include "dtrain/comm/work.h"

namespace dtrain::comm {

// Queues a validated operation on the communicator's worker; returns its Work.
Work enqueue_op(Communicator::Impl& impl, OpArgs args);

// The process is exiting with this communicator still alive (a program that
// returned without destroy_process_group): tell the peers this rank left on
// purpose, so they do not report it as dead. Bounded (at most 2 s).
void announce_exit(Communicator& comm);

}  // namespace dtrain::comm
