// The public collective calls: argument checks at the call site (so a bad
// call fails on the caller's thread with a message naming the argument),
// then one OpArgs handed to the communicator's worker. Ordering, timeouts and
// failure handling live in communicator.cpp.
#include <cstdint>

#include "comm/backend.h"
#include "comm/communicator_impl.h"
#include "comm/cpu_reduce.h"
#include "dtrain/comm/communicator.h"
#include "dtrain/error.h"

namespace dtrain::comm {

const char* op_kind_name(OpKind kind) {
  switch (kind) {
    case OpKind::all_reduce:
      return "all_reduce";
    case OpKind::reduce_scatter:
      return "reduce_scatter";
    case OpKind::all_gather:
      return "all_gather";
    case OpKind::broadcast:
      return "broadcast";
    case OpKind::send:
      return "send";
    case OpKind::recv:
      return "recv";
    case OpKind::all_to_all:
      return "all_to_all";
    case OpKind::barrier:
      return "barrier";
  }
  return "?";
}

namespace {

bool same_storage_range(const Tensor& a, const Tensor& b) {
  return a.data_ptr() == b.data_ptr() && a.nbytes() == b.nbytes();
}

void check_tensor(const Tensor& t, const char* op, const char* what) {
  DTRAIN_CHECK(t.defined(), op, ": ", what, " is an undefined tensor");
  check_collective_dtype(t.dtype(), op);
  if (t.is_cuda()) {
    DTRAIN_CHECK(cuda_compiled(), op, ": ", what, " is on ", t.device().str(),
                 " but dtrain was built without CUDA (NCCL); use CPU tensors");
  }
}

void check_same(const Tensor& a, const Tensor& b, const char* op) {
  DTRAIN_CHECK(a.dtype() == b.dtype(), op, ": input is ", dtype_name(a.dtype()), " but output is ",
               dtype_name(b.dtype()), "; they must match");
  DTRAIN_CHECK(a.device() == b.device(), op, ": input is on ", a.device().str(), " but output on ", b.device().str(),
               "; they must be on the same device");
}

}  // namespace

Work Communicator::all_reduce(const Tensor& tensor, ReduceOp op) {
  return all_reduce(tensor, tensor, op);
}

Work Communicator::all_reduce(const Tensor& input, const Tensor& output, ReduceOp op) {
  check_tensor(input, "all_reduce", "input");
  check_tensor(output, "all_reduce", "output");
  check_same(input, output, "all_reduce");
  DTRAIN_CHECK(input.numel() == output.numel(), "all_reduce: input has ", input.numel(), " elements but output has ",
               output.numel());
  DTRAIN_CHECK(same_storage_range(input, output) || !input.overlaps(output),
               "all_reduce: input and output partly overlap; pass the same tensor (in place) or disjoint ones");
  OpArgs a;
  a.kind = OpKind::all_reduce;
  a.reduce = op;
  a.inputs = {input};
  a.outputs = {output};
  return enqueue_op(*impl_, std::move(a));
}

Work Communicator::all_reduce_coalesced(const std::vector<Tensor>& tensors, ReduceOp op) {
  DTRAIN_CHECK(!tensors.empty(), "all_reduce_coalesced: no tensors given");
  for (const auto& t : tensors) {
    check_tensor(t, "all_reduce_coalesced", "a tensor");
    check_same(tensors[0], t, "all_reduce_coalesced");
  }
  OpArgs a;
  a.kind = OpKind::all_reduce;
  a.reduce = op;
  a.inputs = tensors;
  a.outputs = tensors;
  return enqueue_op(*impl_, std::move(a));
}

Work Communicator::reduce_scatter(const Tensor& input, const Tensor& output, ReduceOp op) {
  check_tensor(input, "reduce_scatter", "input");
  check_tensor(output, "reduce_scatter", "output");
  check_same(input, output, "reduce_scatter");
  DTRAIN_CHECK(input.numel() == output.numel() * size(), "reduce_scatter: input has ", input.numel(),
               " elements but must have size() * output.numel() = ", size(), " * ", output.numel());
  if (input.overlaps(output)) {
    const auto* chunk = static_cast<const uint8_t*>(input.data_ptr()) + output.nbytes() * rank();
    DTRAIN_CHECK(output.data_ptr() == chunk, "reduce_scatter: output overlaps input but is not chunk ", rank(),
                 " of it; use disjoint tensors or input.narrow to this rank's chunk");
  }
  OpArgs a;
  a.kind = OpKind::reduce_scatter;
  a.reduce = op;
  a.inputs = {input};
  a.outputs = {output};
  return enqueue_op(*impl_, std::move(a));
}

Work Communicator::all_gather(const Tensor& input, const Tensor& output) {
  check_tensor(input, "all_gather", "input");
  check_tensor(output, "all_gather", "output");
  check_same(input, output, "all_gather");
  DTRAIN_CHECK(output.numel() == input.numel() * size(), "all_gather: output has ", output.numel(),
               " elements but must have size() * input.numel() = ", size(), " * ", input.numel());
  if (input.overlaps(output)) {
    const auto* chunk = static_cast<const uint8_t*>(output.data_ptr()) + input.nbytes() * rank();
    DTRAIN_CHECK(input.data_ptr() == chunk, "all_gather: input overlaps output but is not chunk ", rank(),
                 " of it; use disjoint tensors or output.narrow to this rank's chunk");
  }
  OpArgs a;
  a.kind = OpKind::all_gather;
  a.inputs = {input};
  a.outputs = {output};
  return enqueue_op(*impl_, std::move(a));
}

Work Communicator::broadcast(const Tensor& tensor, int root) {
  check_tensor(tensor, "broadcast", "tensor");
  DTRAIN_CHECK(root >= 0 && root < size(), "broadcast: root ", root, " is outside [0, ", size(), ")");
  OpArgs a;
  a.kind = OpKind::broadcast;
  a.inputs = {tensor};
  a.outputs = {tensor};
  a.root = root;
  return enqueue_op(*impl_, std::move(a));
}

Work Communicator::send(const Tensor& tensor, int dst, uint32_t tag) {
  check_tensor(tensor, "send", "tensor");
  DTRAIN_CHECK(dst >= 0 && dst < size() && dst != rank(), "send: destination rank ", dst,
               " must be another rank in [0, ", size(), ")");
  OpArgs a;
  a.kind = OpKind::send;
  a.inputs = {tensor};
  a.root = dst;
  a.tag = tag;
  return enqueue_op(*impl_, std::move(a));
}

Work Communicator::recv(const Tensor& tensor, int src, uint32_t tag) {
  check_tensor(tensor, "recv", "tensor");
  DTRAIN_CHECK(src >= 0 && src < size() && src != rank(), "recv: source rank ", src, " must be another rank in [0, ",
               size(), ")");
  OpArgs a;
  a.kind = OpKind::recv;
  a.outputs = {tensor};
  a.root = src;
  a.tag = tag;
  return enqueue_op(*impl_, std::move(a));
}

Work Communicator::all_to_all(const Tensor& input, const Tensor& output) {
  check_tensor(input, "all_to_all", "input");
  check_tensor(output, "all_to_all", "output");
  check_same(input, output, "all_to_all");
  DTRAIN_CHECK(input.numel() == output.numel(), "all_to_all: input has ", input.numel(), " elements but output has ",
               output.numel());
  DTRAIN_CHECK(input.numel() % size() == 0, "all_to_all: ", input.numel(), " elements do not split into ", size(),
               " equal chunks");
  DTRAIN_CHECK(same_storage_range(input, output) || !input.overlaps(output),
               "all_to_all: input and output partly overlap");
  OpArgs a;
  a.kind = OpKind::all_to_all;
  a.inputs = {input};
  a.outputs = {output};
  return enqueue_op(*impl_, std::move(a));
}

Work Communicator::barrier() {
  OpArgs a;
  a.kind = OpKind::barrier;
  return enqueue_op(*impl_, std::move(a));
}

}  // namespace dtrain::comm
