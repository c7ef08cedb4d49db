// The collective table (src/comm/collective_specs.h) against values worked
// out by hand: nccl-tests' bus-bandwidth factors, element counts, in-place
// aliasing, expected outputs, and the checker that counts wrong elements.
#include <catch2/catch.hpp>

#include "check_close.h"
#include "comm/collective_specs.h"

using namespace dtrain;
using namespace dtrain::comm;

namespace {

double ten_r_plus_i(int rank, int64_t i) {
  return 10.0 * rank + static_cast<double>(i);
}

}  // namespace

TEST_CASE("busbw factors are nccl-tests' factors, computed by hand") {
  // all_reduce 2(n-1)/n; reduce_scatter, all_gather, all_to_all (n-1)/n; broadcast 1.
  const struct {
    const char* op;
    int n;
    double want;
  } cases[] = {{"all_reduce", 1, 0.0},     {"all_reduce", 2, 1.0},     {"all_reduce", 4, 1.5},
               {"all_reduce", 8, 1.75},    {"reduce_scatter", 2, 0.5}, {"reduce_scatter", 8, 0.875},
               {"all_gather", 4, 0.75},    {"all_gather", 1, 0.0},     {"all_to_all", 4, 0.75},
               {"all_to_all", 16, 0.9375}, {"broadcast", 1, 1.0},      {"broadcast", 8, 1.0}};
  for (const auto& c : cases) {
    INFO(c.op << " at " << c.n << " ranks");
    CHECK(collective_spec(c.op).busbw_factor(c.n) == Approx(c.want).margin(1e-12));
  }
}

TEST_CASE("the table has each collective once and refuses unknown names") {
  CHECK(collective_specs().size() == 5);
  CHECK(collective_names() == "all_reduce, reduce_scatter, all_gather, all_to_all, broadcast");
  CHECK_THROWS_WITH(collective_spec("allreduce"), Catch::Contains("all_reduce, reduce_scatter"));
}

TEST_CASE("element counts per rank follow nccl-tests' count (the largest buffer)") {
  const auto& rs = collective_spec("reduce_scatter");
  const auto& ag = collective_spec("all_gather");
  const auto& ar = collective_spec("all_reduce");
  CHECK(rs.input_count(100, 4) == 100);
  CHECK(rs.output_count(100, 4) == 25);
  CHECK(ag.input_count(100, 4) == 25);
  CHECK(ag.output_count(100, 4) == 100);
  CHECK(usable_count(ag, 102, 4) == 100);  // whole chunks only
  CHECK(usable_count(ar, 102, 4) == 102);
  CHECK(usable_count(collective_spec("all_to_all"), 7, 2) == 6);
}

TEST_CASE("expected outputs, worked out by hand for 2 ranks and 4 elements") {
  const InputValue v = ten_r_plus_i;  // rank 0: 0 1 2 3, rank 1: 10 11 12 13
  auto out = [&](const char* op, int rank, ReduceOp r = ReduceOp::sum, DType dt = DType::f32, int root = 0) {
    std::vector<double> o;
    const auto& spec = collective_spec(op);
    for (int64_t i = 0; i < spec.output_count(4, 2); ++i)
      o.push_back(expected_output(spec, v, rank, 2, 4, i, r, dt, root));
    return o;
  };
  CHECK(out("all_reduce", 1) == std::vector<double>{10, 12, 14, 16});
  CHECK(out("all_reduce", 0, ReduceOp::max) == std::vector<double>{10, 11, 12, 13});
  CHECK(out("all_reduce", 0, ReduceOp::avg) == std::vector<double>{5, 6, 7, 8});
  CHECK(out("all_reduce", 0, ReduceOp::product) == std::vector<double>{0, 11, 24, 39});
  CHECK(out("reduce_scatter", 1) == std::vector<double>{14, 16});    // elements 2 and 3 summed
  CHECK(out("all_gather", 0) == std::vector<double>{0, 1, 10, 11});  // each rank's 2 inputs, in rank order
  CHECK(out("all_to_all", 1) == std::vector<double>{2, 3, 12, 13});  // chunk 1 of every rank
  CHECK(out("broadcast", 0, ReduceOp::sum, DType::f32, 1) == std::vector<double>{10, 11, 12, 13});
  // avg of integers truncates: ranks holding 0 and 1 average to 0 in i32, 0.5 in f32.
  const InputValue odd = [](int rank, int64_t i) { return static_cast<double>(rank + i); };
  CHECK(reduced_value(odd, 2, 0, ReduceOp::avg, DType::i32) == 0.0);  // (0 + 1) / 2 -> 0
  CHECK(reduced_value(odd, 2, 0, ReduceOp::avg, DType::f32) == 0.5);
}

TEST_CASE("in-place buffers alias as nccl-tests lays them out") {
  const InputValue v = ten_r_plus_i;
  const int rank = 1, world = 2;
  CollectiveBuffers ag =
      make_buffers(collective_spec("all_gather"), 8, DType::f32, Device::cpu(), rank, world, true, v);
  CHECK(ag.input.data_ptr() == static_cast<float*>(ag.output.data_ptr()) + 4);  // rank 1's slice of the output
  CHECK(ag.input.item(0) == 10.0);
  CollectiveBuffers rs =
      make_buffers(collective_spec("reduce_scatter"), 8, DType::f32, Device::cpu(), rank, world, true, v);
  CHECK(rs.output.data_ptr() == static_cast<float*>(rs.input.data_ptr()) + 4);
  CollectiveBuffers ar =
      make_buffers(collective_spec("all_reduce"), 8, DType::f32, Device::cpu(), rank, world, true, v);
  CHECK(ar.output.data_ptr() == ar.input.data_ptr());
  CollectiveBuffers oop =
      make_buffers(collective_spec("all_reduce"), 8, DType::f32, Device::cpu(), rank, world, false, v);
  CHECK(oop.output.data_ptr() != oop.input.data_ptr());
}

TEST_CASE("count_wrong counts every element off by more than the dtype's tolerance") {
  const InputValue v = ten_r_plus_i;
  const auto& spec = collective_spec("all_reduce");
  for (DType dt : {DType::f32, DType::bf16, DType::i32}) {
    CollectiveBuffers b = make_buffers(spec, 6, dt, Device::cpu(), 0, 2, false, v);
    for (int64_t i = 0; i < 6; ++i) b.output.set_item(i, expected_output(spec, v, 0, 2, 6, i, ReduceOp::sum, dt, 0));
    CHECK(count_wrong(spec, b, v, 0, 2, ReduceOp::sum, dt) == 0);
    b.output.set_item(2, b.output.item(2) + 1);
    if (dt != DType::i32) b.output.set_item(5, std::nan(""));  // NaN counts as wrong
    std::vector<std::string> mismatches;
    CHECK(count_wrong(spec, b, v, 0, 2, ReduceOp::sum, dt, 0, &mismatches) == (dt == DType::i32 ? 1 : 2));
    CHECK_FALSE(mismatches.empty());
    CHECK_THAT(mismatches[0], Catch::Contains("all_reduce element 2"));
  }
}
