// EngineContext: what every piece of the data-parallel engine shares -- the
// communicator, this rank's place, the device, the options and the trace --
// so that the pieces (layout, reducer, gather scheduler, step) take one
// reference instead of reaching into one another.
#pragma once

#include <memory>
#include <string>

#include "dtrain/comm/communicator.h"
#include "dtrain/parallel/data_parallel.h"
#include "parallel/completion_watcher.h"

namespace dtrain::parallel::detail {

struct EngineContext {
  std::shared_ptr<comm::Communicator> comm;
  DataParallelOptions opt;
  int rank = 0, world = 1;
  Device device;
  Trace* trace = nullptr;                      // null unless options.trace
  std::unique_ptr<CompletionWatcher> watcher;  // with the trace

  // Trace helpers: begin an event (0 without a trace), and end it when an
  // asynchronous collective completes (at once at world size 1, where no
  // collective was issued).
  size_t trace_begin(const std::string& kind, const std::string& name) const {
    return trace ? trace->begin(kind, name) : 0;
  }
  void trace_end(size_t event) const {
    if (trace) trace->end(event);
  }
  void trace_async(const comm::Work& work, size_t event) const {
    if (!trace) return;
    if (world > 1) {
      watcher->watch(work, event);
    } else {
      trace->end(event);
    }
  }
};

}  // namespace dtrain::parallel::detail
