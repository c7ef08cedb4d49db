// Releasing Python-owned memory from threads Python does not know.
//
// A tensor made from a NumPy array (or a DLPack capsule from Python) holds a
// Python reference; its storage may be freed on a library thread (the
// communicator drops a finished collective's tensors on its worker). Taking
// the GIL there is unsafe: during interpreter shutdown PyGILState_Ensure
// ends the calling thread with pthread_exit, whose forced unwind through the
// library's noexcept destructors aborts the process. So a release that finds
// the GIL not held is queued and handed to the interpreter with
// Py_AddPendingCall (callable from any thread without the GIL); the main
// thread runs it at its next bytecode boundary. Once the interpreter is
// finalizing, queued releases are dropped (the process is exiting anyway).
#include <mutex>
#include <vector>

#include "bindings.h"

namespace dtrain::python {
namespace {

std::mutex g_mutex;
std::vector<std::function<void()>> g_pending;
bool g_scheduled = false;

int drain(void*) {
  std::vector<std::function<void()>> work;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    work.swap(g_pending);
    g_scheduled = false;
  }
  for (auto& fn : work) fn();
  return 0;
}

}  // namespace

void release_under_gil(std::function<void()> fn) {
  if (!Py_IsInitialized()) return;
  if (PyGILState_Check()) {
    fn();
    return;
  }
  std::lock_guard<std::mutex> lock(g_mutex);
  g_pending.push_back(std::move(fn));
  if (!g_scheduled) g_scheduled = Py_AddPendingCall(&drain, nullptr) == 0;
}

}  // namespace dtrain::python
