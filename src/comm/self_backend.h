// Internal: the transport of a communicator of one rank (single_process_group):
// every collective over one rank is a copy of the input into the output, or
// nothing when they are the same buffer; no sockets, no threads.
#pragma once

#include <memory>

#include "comm/backend.h"

namespace dtrain::comm {

std::unique_ptr<Backend> make_self_backend();

}  // namespace dtrain::comm
