#include "parallel/consistency_check.h"

#include <algorithm>
#include <sstream>

namespace dtrain::parallel::detail {

ConsistencyCheck::ConsistencyCheck(nn::Module& model, const Layout& layout)
    : layout_(layout), modules_(model.named_modules()), forward_runs_(modules_.size(), 0) {
  reset_grads();
  reset_step();
}

void ConsistencyCheck::note_grad(int param_id) {
  DTRAIN_CHECK(grad_seen_[static_cast<size_t>(param_id)] == 0, "DataParallel: parameter '",
               layout_.param_name(param_id), "' reported its gradient twice in one backward");
  grad_seen_[static_cast<size_t>(param_id)] = 1;
  step_seen_[static_cast<size_t>(param_id)] = 1;
}

void ConsistencyCheck::start(comm::Communicator& comm) {
  const size_t np = grad_seen_.size();
  summed_ = Tensor::empty({static_cast<int64_t>(2 * np + modules_.size())}, DType::i32, Device::cpu());
  int32_t* c = summed_.data<int32_t>();
  for (size_t i = 0; i < np; ++i) c[i] = grad_seen_[i];
  for (size_t i = 0; i < modules_.size(); ++i) c[np + i] = forward_runs_[i];
  for (size_t i = 0; i < np; ++i) c[np + modules_.size() + i] = step_seen_[i];
  work_ = comm.all_reduce(summed_, comm::ReduceOp::sum);
}

std::string ConsistencyCheck::finish(int rank, int world) {
  if (!summed_.defined()) return "";
  work_.wait();
  work_ = comm::Work();
  const int32_t* step = summed_.data<int32_t>() + grad_seen_.size() + modules_.size();
  step_summed_.assign(step, step + grad_seen_.size());
  step_compared_ = true;
  std::string text = describe_mismatch(summed_, rank, world);
  summed_ = Tensor();
  return text;
}

void ConsistencyCheck::reset_forward_runs() {
  std::fill(forward_runs_.begin(), forward_runs_.end(), 0);
}

void ConsistencyCheck::reset_grads() {
  grad_seen_.assign(layout_.params.size(), 0);
}

void ConsistencyCheck::reset_step() {
  step_seen_.assign(layout_.params.size(), 0);
  step_summed_.clear();
  step_compared_ = false;
}

std::vector<int> ConsistencyCheck::unused_in_step(int world) const {
  const std::vector<int32_t>* seen = nullptr;
  if (step_compared_) {
    seen = &step_summed_;
  } else if (world == 1) {
    seen = &step_seen_;
  }
  std::vector<int> out;
  if (seen == nullptr) return out;
  for (size_t i = 0; i < seen->size(); ++i) {
    if ((*seen)[i] == 0) out.push_back(static_cast<int>(i));
  }
  return out;
}

std::string ConsistencyCheck::describe_mismatch(const Tensor& summed, int rank, int world) const {
  const int32_t* c = summed.data<int32_t>();
  const size_t np = grad_seen_.size();
  std::ostringstream os;
  int problems = 0;
  for (size_t i = 0; i < np && problems < 8; ++i) {
    if (c[i] != 0 && c[i] != world) {
      os << (problems++ ? "; " : "") << "parameter '" << layout_.params[i].name << "' received a gradient on " << c[i]
         << " of " << world << " ranks (" << (grad_seen_[i] ? "including" : "not on") << " this rank, rank " << rank
         << ")";
    }
  }
  for (size_t i = 0; i < modules_.size() && problems < 8; ++i) {
    const int32_t total = c[np + i];
    if (total != forward_runs_[i] * world) {
      os << (problems++ ? "; " : "") << "module '" << (modules_[i].first.empty() ? "model" : modules_[i].first)
         << "' ran " << forward_runs_[i] << " time(s) on this rank (rank " << rank << ") but " << total
         << " times over all " << world << " ranks";
    }
  }
  if (problems == 0) return "";
  return "DataParallel: ranks disagree in this backward (every rank must run the same modules and produce a "
         "gradient for the same parameters; make unused branches contribute a zero gradient): " +
         os.str();
}

}  // namespace dtrain::parallel::detail
