// Runs the PyTorch GPT-2 baseline script (pytorch_baseline.h) through popen
// and keeps its last JSON line; its stderr goes to ours, so a torch traceback
// is seen where the run's log is read.
#include "pytorch_baseline.h"

#include <sys/wait.h>

#include <cstdio>
#include <fstream>

namespace dtrain::bench {
namespace {

std::string quoted(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

nlohmann::json skipped(const std::string& reason) {
  return {{"impl", "pytorch"}, {"skipped", reason}};
}

}  // namespace

std::string pytorch_command(const PytorchRun& run) {
  std::string cmd = quoted(run.python) + " " + quoted(run.script) + " --preset " + quoted(run.preset) +
                    " --precision " + quoted(run.precision) + " --device " + quoted(run.device) + " --batch " +
                    std::to_string(run.batch) + " --seq-len " + std::to_string(run.seq_len) + " --steps " +
                    std::to_string(run.steps);
  return run.compile ? cmd + " --compile" : cmd;
}

nlohmann::json run_pytorch_baseline(const PytorchRun& run) {
  if (!std::ifstream(run.script).good()) return skipped("no PyTorch script at " + run.script + " (--pytorch-script)");
  std::FILE* pipe = ::popen(pytorch_command(run).c_str(), "r");
  if (pipe == nullptr) return skipped("cannot start " + run.python);
  nlohmann::json last;
  char line[8192];
  while (std::fgets(line, sizeof line, pipe) != nullptr) {
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_object()) last = std::move(j);
  }
  const int status = ::pclose(pipe);
  if (last.is_object()) return last;
  const int code = status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return skipped(run.python + " " + run.script + " printed no result (exit " + std::to_string(code) +
                 "; its messages are above)");
}

}  // namespace dtrain::bench
