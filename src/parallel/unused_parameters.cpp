#include "parallel/unused_parameters.h"

#include <unordered_set>

namespace dtrain::parallel::detail {

namespace {

// "w" or "w[0:15]" -> "w".
std::string parameter_of(const std::string& ref_name) {
  const size_t bracket = ref_name.find('[');
  return bracket == std::string::npos ? ref_name : ref_name.substr(0, bracket);
}

// The optimizer names its state "<reference name>.<kind>" (kind without a dot).
bool state_of(const std::string& state_name, const std::unordered_set<std::string>& refs) {
  const size_t dot = state_name.rfind('.');
  return dot != std::string::npos && refs.count(state_name.substr(0, dot)) != 0;
}

}  // namespace

FrozenForStep::FrozenForStep(optim::Optimizer& optimizer, const std::vector<std::string>& names) {
  if (names.empty()) return;
  const std::unordered_set<std::string> unused(names.begin(), names.end());
  std::unordered_set<std::string> refs;
  for (auto& group : optimizer.groups()) {
    for (auto& ref : group.params) {
      if (unused.count(parameter_of(ref.name)) == 0) continue;
      refs.insert(ref.name);
      saved_.emplace_back(ref.value, ref.value.clone());
    }
  }
  if (refs.empty()) return;
  for (auto& [name, tensor] : optimizer.state()) {
    if (state_of(name, refs)) saved_.emplace_back(tensor, tensor.clone());
  }
}

void FrozenForStep::restore() {
  for (auto& [live, copy] : saved_) live.copy_(copy);
  saved_.clear();
}

}  // namespace dtrain::parallel::detail
