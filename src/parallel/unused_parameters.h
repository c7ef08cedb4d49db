// FrozenForStep: keeps the optimizer from touching parameters that received
// no gradient on any rank in a step. Such a parameter is not updated at all
// -- no weight decay, its optimizer state (AdamW moments, momentum) left as
// it was -- as PyTorch's optimizers skip a parameter whose gradient is None.
// The optimizer has no per-parameter switch, so the pieces it holds of those
// parameters (values and named state) are copied before its step and copied
// back after it; only the unused parameters' pieces are copied.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "dtrain/optim/optimizer.h"

namespace dtrain::parallel::detail {

class FrozenForStep {
 public:
  // `names`: the unused parameters. The optimizer's references to them are
  // the engine's (DataParallel::param_groups): the parameter's name, or its
  // name followed by "[lo:hi]" for a piece of it.
  FrozenForStep(optim::Optimizer& optimizer, const std::vector<std::string>& names);
  // Puts the saved values and state back (after the optimizer's step).
  void restore();
  size_t tensors_saved() const { return saved_.size(); }

 private:
  std::vector<std::pair<Tensor, Tensor>> saved_;  // (live tensor, copy)
};

}  // namespace dtrain::parallel::detail
