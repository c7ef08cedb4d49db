// One table of the collectives: for each one, how many elements each rank
// sends and receives, nccl-tests' bus-bandwidth factor, how to issue it in
// place and out of place, and the value every output element must hold.
// The comm benchmark (benchmarks/comm) and the comm test worker
// (tests/comm/comm_worker.cpp) both read it, so a collective is described once.
//
// Conventions, as nccl-tests (doc/PERFORMANCE.md there) counts them:
//  - `count` is the element count of the largest buffer of the call (the full
//    array of all_gather and reduce_scatter); chunked collectives use whole
//    chunks of count / world elements.
//  - busbw = algbw * factor: all_reduce 2(n-1)/n; reduce_scatter, all_gather,
//    all_to_all (n-1)/n; broadcast 1. It is the bandwidth each link carries in
//    the optimal algorithm, comparable with the hardware's link speed.
//  - In place: all_reduce and all_to_all reuse one buffer, all_gather's input
//    is this rank's slice of the output, reduce_scatter's output is this rank's
//    slice of the input. dtrain's broadcast has one buffer, so both modes are
//    the same call.
// Element i of rank r's input is value(r, i), a function the caller picks
// (small integers keep every dtype exact).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "dtrain/comm.h"
#include "dtrain/error.h"

namespace dtrain::comm {

enum class Collective : uint8_t { all_reduce, reduce_scatter, all_gather, all_to_all, broadcast };

// Element i of rank r's input.
using InputValue = std::function<double(int rank, int64_t i)>;

struct CollectiveSpec {
  Collective kind;
  const char* name;
  bool reduces;  // takes a ReduceOp
  bool chunked;  // count must be a whole number of chunks (a multiple of the world size)
  double (*busbw_factor)(int world);
  int64_t (*input_count)(int64_t count, int world);
  int64_t (*output_count)(int64_t count, int world);
};

inline const std::vector<CollectiveSpec>& collective_specs() {
  static const std::vector<CollectiveSpec> specs = {
      {Collective::all_reduce, "all_reduce", true, false, [](int n) { return 2.0 * (n - 1) / n; },
       [](int64_t c, int) { return c; }, [](int64_t c, int) { return c; }},
      {Collective::reduce_scatter, "reduce_scatter", true, true, [](int n) { return (n - 1.0) / n; },
       [](int64_t c, int) { return c; }, [](int64_t c, int n) { return c / n; }},
      {Collective::all_gather, "all_gather", false, true, [](int n) { return (n - 1.0) / n; },
       [](int64_t c, int n) { return c / n; }, [](int64_t c, int) { return c; }},
      {Collective::all_to_all, "all_to_all", false, true, [](int n) { return (n - 1.0) / n; },
       [](int64_t c, int) { return c; }, [](int64_t c, int) { return c; }},
      {Collective::broadcast, "broadcast", false, false, [](int) { return 1.0; }, [](int64_t c, int) { return c; },
       [](int64_t c, int) { return c; }},
  };
  return specs;
}

inline std::string collective_names() {
  std::string names;
  for (const auto& s : collective_specs()) names += std::string(names.empty() ? "" : ", ") + s.name;
  return names;
}

inline const CollectiveSpec& collective_spec(const std::string& name) {
  for (const auto& s : collective_specs())
    if (name == s.name) return s;
  DTRAIN_THROW("unknown collective '", name, "' (known: ", collective_names(), ")");
}

// `count` rounded down to whole chunks for chunked collectives.
inline int64_t usable_count(const CollectiveSpec& spec, int64_t count, int world) {
  return spec.chunked ? count - count % world : count;
}

// Tolerance of a checked element, relative to max(1, |expected|): integer
// dtypes exact, bf16/f16 one part in a hundred (their sums round).
inline double collective_tolerance(DType dtype) {
  if (dtype == DType::f32) return 1e-5;
  if (dtype == DType::bf16 || dtype == DType::f16) return 1e-2;
  return 0.0;
}

// The reduction of value(0, i) .. value(world - 1, i) under `op`, as `dtype`
// stores it (avg of integers truncates).
inline double reduced_value(const InputValue& value, int world, int64_t i, ReduceOp op, DType dtype) {
  double acc = value(0, i);
  for (int r = 1; r < world; ++r) {
    const double v = value(r, i);
    switch (op) {
      case ReduceOp::sum:
      case ReduceOp::avg:
        acc += v;
        break;
      case ReduceOp::max:
        acc = std::max(acc, v);
        break;
      case ReduceOp::min:
        acc = std::min(acc, v);
        break;
      case ReduceOp::product:
        acc *= v;
        break;
    }
  }
  if (op == ReduceOp::avg) acc = is_floating(dtype) ? acc / world : std::trunc(acc / world);
  return acc;
}

// What element i of `rank`'s output holds after the collective moved `count` elements.
inline double expected_output(const CollectiveSpec& spec, const InputValue& value, int rank, int world, int64_t count,
                              int64_t i, ReduceOp op, DType dtype, int root) {
  switch (spec.kind) {
    case Collective::all_reduce:
      return reduced_value(value, world, i, op, dtype);
    case Collective::reduce_scatter:
      return reduced_value(value, world, rank * spec.output_count(count, world) + i, op, dtype);
    case Collective::all_gather: {
      const int64_t n = spec.input_count(count, world);
      return value(static_cast<int>(i / n), i % n);
    }
    case Collective::all_to_all: {
      const int64_t chunk = count / world;
      return value(static_cast<int>(i / chunk), rank * chunk + i % chunk);
    }
    case Collective::broadcast:
      return value(root, i);
  }
  DTRAIN_THROW("unknown collective kind ", static_cast<int>(spec.kind));
}

// The buffers of one call; host_input keeps the input so it can be restored.
struct CollectiveBuffers {
  int64_t count = 0;
  Tensor host_input, input, output;
};

// Puts this rank's input back (in-place calls overwrite it).
inline void reset_input(CollectiveBuffers& b) {
  b.input.copy_(b.host_input.to(b.input.device()));
}

inline CollectiveBuffers make_buffers(const CollectiveSpec& spec, int64_t count, DType dtype, Device device, int rank,
                                      int world, bool in_place, const InputValue& value) {
  CollectiveBuffers b;
  b.count = usable_count(spec, count, world);
  const int64_t in_n = spec.input_count(b.count, world), out_n = spec.output_count(b.count, world);
  b.host_input = Tensor::empty({in_n}, dtype);
  for (int64_t i = 0; i < in_n; ++i) b.host_input.set_item(i, value(rank, i));
  if (spec.kind == Collective::broadcast || (in_place && spec.kind != Collective::all_gather)) {
    b.input = Tensor::empty({in_n}, dtype, device);
    b.output = spec.kind == Collective::reduce_scatter ? b.input.narrow(rank * out_n, out_n) : b.input;
  } else {
    b.output = Tensor::zeros({out_n}, dtype, device);
    b.input = in_place ? b.output.narrow(rank * in_n, in_n) : Tensor::empty({in_n}, dtype, device);
  }
  reset_input(b);
  return b;
}

inline Work issue(const CollectiveSpec& spec, Communicator& c, const CollectiveBuffers& b, ReduceOp op = ReduceOp::sum,
                  int root = 0) {
  switch (spec.kind) {
    case Collective::all_reduce:
      return b.input.data_ptr() == b.output.data_ptr() ? c.all_reduce(b.output, op)
                                                       : c.all_reduce(b.input, b.output, op);
    case Collective::reduce_scatter:
      return c.reduce_scatter(b.input, b.output, op);
    case Collective::all_gather:
      return c.all_gather(b.input, b.output);
    case Collective::all_to_all:
      return c.all_to_all(b.input, b.output);
    case Collective::broadcast:
      return c.broadcast(b.output, root);
  }
  DTRAIN_THROW("unknown collective kind ", static_cast<int>(spec.kind));
}

// Output elements that differ from expected_output beyond collective_tolerance
// (NaN counts as wrong); the first few mismatches go to `mismatches` when given.
inline int64_t count_wrong(const CollectiveSpec& spec, const CollectiveBuffers& b, const InputValue& value, int rank,
                           int world, ReduceOp op, DType dtype, int root = 0,
                           std::vector<std::string>* mismatches = nullptr) {
  const Tensor out = b.output.to(Device::cpu());
  const double tol = collective_tolerance(dtype);
  int64_t wrong = 0;
  for (int64_t i = 0; i < out.numel(); ++i) {
    const double want = expected_output(spec, value, rank, world, b.count, i, op, dtype, root);
    const double got = out.item(i);
    if (std::fabs(got - want) <= tol * std::max(1.0, std::fabs(want))) continue;
    ++wrong;
    if (mismatches && wrong <= 5)
      mismatches->push_back(std::string(spec.name) + " element " + std::to_string(i) + ": got " + std::to_string(got) +
                            ", want " + std::to_string(want));
  }
  return wrong;
}

}  // namespace dtrain::comm
