// The one-rank transport (self_backend.h). Over one rank, sum, avg, max, min
// and product of a tensor are the tensor itself, a reduce-scatter or an
// all-gather moves the one chunk there is, and a broadcast from rank 0 or a
// barrier has nothing to do. Point-to-point has no peer (the communicator
// refuses sends and recvs to oneself before they get here).
#include "comm/self_backend.h"

#include <cstring>

#include "dtrain/error.h"

namespace dtrain::comm {
namespace {

void copy_if_distinct(const Tensor& input, const Tensor& output) {
  if (input.data_ptr() != output.data_ptr() && input.nbytes() > 0)
    std::memcpy(output.data_ptr(), input.data_ptr(), input.nbytes());
}

class SelfBackend final : public Backend {
 public:
  const char* name() const override { return "self"; }

  Completion run(const OpArgs& a) override {
    switch (a.kind) {
      case OpKind::all_reduce:
      case OpKind::reduce_scatter:
      case OpKind::all_gather:
      case OpKind::all_to_all:
        for (size_t i = 0; i < a.inputs.size(); ++i) copy_if_distinct(a.inputs[i], a.outputs[i]);
        break;
      case OpKind::broadcast:
      case OpKind::barrier:
        break;
      case OpKind::send:
      case OpKind::recv:
        DTRAIN_THROW(op_kind_name(a.kind), ": a communicator of one rank has no peer");
    }
    return {};
  }

  void abort() override {}
};

}  // namespace

std::unique_ptr<Backend> make_self_backend() {
  return std::make_unique<SelfBackend>();
}

}  // namespace dtrain::comm
