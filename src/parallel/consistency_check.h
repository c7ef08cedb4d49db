// ConsistencyCheck: at the end of every communicating backward the ranks
// compare which parameters received a gradient and how often each module
// ran (one small all-reduce), so a rank that diverged produces the same
// error, naming the parameter or module, on every rank instead of a hang.
// The same all-reduce also tells which parameters received a gradient on
// some rank in some backward since the last step, so that step() can leave
// the ones used nowhere alone.
#pragma once

#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "dtrain/comm/communicator.h"
#include "dtrain/nn/module.h"
#include "parallel/layout.h"

namespace dtrain::parallel::detail {

class ConsistencyCheck {
 public:
  ConsistencyCheck(nn::Module& model, const Layout& layout);

  const std::vector<std::pair<std::string, nn::Module*>>& modules() const { return modules_; }
  void count_forward(size_t module_index) { ++forward_runs_[module_index]; }
  // Records a parameter's gradient; throws if it was reported twice.
  void note_grad(int param_id);
  const std::vector<int32_t>& grads_seen() const { return grad_seen_; }

  // Issues the comparison (sum over ranks) of this rank's counts.
  void start(comm::Communicator& comm);
  // Waits for it; returns the error text ("" when the ranks agree).
  std::string finish(int rank, int world);
  // Forgets the forward counts (after each communicating backward) / the
  // gradients seen (after every backward).
  void reset_forward_runs();
  void reset_grads();

  // Parameters that received a gradient on no rank in any backward since the
  // last reset_step(): known after a comparison (finish), or from this rank
  // alone at world size 1. Empty when unknown (no comparison ran: the check
  // is off), so nothing is skipped then.
  std::vector<int> unused_in_step(int world) const;
  void reset_step();

 private:
  std::string describe_mismatch(const Tensor& summed, int rank, int world) const;

  const Layout& layout_;
  std::vector<std::pair<std::string, nn::Module*>> modules_;
  std::vector<int32_t> forward_runs_;
  std::vector<int32_t> grad_seen_;
  std::vector<int32_t> step_seen_;    // this rank, any backward since reset_step
  std::vector<int32_t> step_summed_;  // step_seen_ summed over ranks at the last comparison
  bool step_compared_ = false;
  Tensor summed_;
  comm::Work work_;
};

}  // namespace dtrain::parallel::detail
