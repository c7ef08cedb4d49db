// One rank of the attack trials (tests/security): a small data-parallel
// training job (a tiny GPT, ZeRO stage 0, AdamW) that trains until a stop
// file appears, printing "step N" after every step so the test can measure
// the step rate while it attacks the job's ports.
//
//   security_worker train STOP_FILE [MAX_SECONDS]
// Exit codes: 0 trained and stopped cleanly, 2 an error (message printed).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>

#include "dtrain/comm/init.h"
#include "dtrain/nn/gpt.h"
#include "dtrain/optim/adamw.h"
#include "dtrain/parallel/data_parallel.h"

using namespace dtrain;

namespace {

int train(const std::string& stop_file, double max_seconds) {
  auto comm = comm::init_process_group();
  nn::GPTConfig config;
  config.n_layer = 2;
  config.n_head = 2;
  config.n_embd = 64;
  config.vocab_size = 64;
  config.max_seq_len = 32;
  nn::GPT model(config, Device::cpu(), 7);
  parallel::DataParallel dp(model, comm, parallel::DataParallelOptions{});
  optim::AdamW opt(dp.param_groups(0.1f));
  std::mt19937 rng(static_cast<uint32_t>(100 + comm->rank()));
  std::uniform_int_distribution<int32_t> tok(0, 63);
  const int64_t rows = 4, T = 32;
  const auto start = std::chrono::steady_clock::now();
  int step = 0;
  for (;; ++step) {
    Tensor x = Tensor::empty({rows, T}, DType::i32), y = Tensor::empty({rows, T}, DType::i32);
    for (int64_t i = 0; i < rows * T; ++i) {
      x.data<int32_t>()[i] = tok(rng);
      y.data<int32_t>()[i] = (x.data<int32_t>()[i] + 1) % 64;
    }
    model.forward(x, y, dp.grad_scale());
    model.backward();
    dp.step(opt, 1e-3f, 1.0f);
    std::printf("step %d\n", step);
    std::fflush(stdout);
    // Every rank stops at the same step: the decision is all-reduced.
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const float stop = dp.average(std::ifstream(stop_file).good() || elapsed > max_seconds ? 1.0f : 0.0f);
    if (stop > 0) break;
  }
  std::printf("rank %d: trained %d steps\n", comm->rank(), step + 1);
  comm.reset();
  comm::destroy_process_group();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  try {
    if (mode == "train" && argc > 2) return train(argv[2], argc > 3 ? std::atof(argv[3]) : 120.0);
  } catch (const std::exception& e) {
    std::printf("ERROR: %s\n", e.what());
    std::fflush(stdout);
    return 2;
  }
  std::fprintf(stderr, "usage: security_worker train STOP_FILE [MAX_SECONDS]\n");
  return 2;
}
