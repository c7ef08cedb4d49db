// Communicator::single_process(): the world-1 communicator a training run
// without a launcher uses (train_gpt's one loop, training.h). Collectives
// over one rank leave the data as it is (or copy it to the output); a send
// has no peer. (That it opens no socket is by construction: its CPU transport
// is comm/self_backend.cpp, and its store a map in memory.)
#include <catch2/catch.hpp>
#include <string>

#include "dtrain/comm/communicator.h"

using namespace dtrain;

TEST_CASE("a single-process communicator has one rank and its collectives copy", "[precision][comm]") {
  auto comm = comm::Communicator::single_process();
  CHECK(comm->rank() == 0);
  CHECK(comm->size() == 1);

  Tensor t = Tensor::from_vector({1.5f, -2.0f, 3.25f}, {3});
  comm->all_reduce(t, comm::ReduceOp::avg).wait();
  comm->all_reduce(t, comm::ReduceOp::sum).wait();
  CHECK(t.to_vector() == std::vector<float>{1.5f, -2.0f, 3.25f});
  Tensor out = Tensor::zeros({3});
  comm->all_reduce(t, out, comm::ReduceOp::max).wait();
  CHECK(out.to_vector() == t.to_vector());
  Tensor gathered = Tensor::zeros({3}, DType::bf16), piece = Tensor::from_vector({1, 2, 3}, {3}, DType::bf16);
  comm->all_gather(piece, gathered).wait();
  CHECK(gathered.to_vector() == std::vector<float>{1, 2, 3});
  Tensor shard = Tensor::zeros({3});
  comm->reduce_scatter(t, shard, comm::ReduceOp::avg).wait();
  CHECK(shard.to_vector() == t.to_vector());
  comm->broadcast(t, 0).wait();
  comm->barrier().wait();
  CHECK(t.to_vector() == std::vector<float>{1.5f, -2.0f, 3.25f});
  CHECK_THROWS_WITH(comm->send(t, 0), Catch::Contains("send"));
  CHECK(comm->error().empty());
}
