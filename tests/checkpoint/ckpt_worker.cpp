// One rank of the checkpoint job tests, started with RANK/WORLD_SIZE/MASTER_*:
//
//   ckpt_worker resave SRC_DIR DST_ROOT STAGE [PRECISION]
//
// builds the GPT the checkpoint describes under a data-parallel engine at this
// job's world size, ZeRO STAGE and PRECISION (default: the checkpoint's), loads SRC_DIR into it (each rank reading
// only the ranges its layout needs), and saves it again under DST_ROOT. The
// test then compares every tensor of the two checkpoints bitwise: a
// round trip through any layout must not change a bit.
// Exit codes: 0 done, 1 an error (printed), 2 bad usage.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "dtrain/checkpoint.h"
#include "dtrain/comm/init.h"
#include "dtrain/nn/gpt.h"
#include "dtrain/optim/adamw.h"
#include "dtrain/parallel/data_parallel.h"

using namespace dtrain;

int main(int argc, char** argv) {
  if ((argc != 5 && argc != 6) || std::string(argv[1]) != "resave") {
    std::fprintf(stderr, "usage: ckpt_worker resave SRC_DIR DST_ROOT STAGE [PRECISION]\n");
    return 2;
  }
  try {
    auto comm = comm::init_process_group();
    checkpoint::Reader reader(argv[2]);
    checkpoint::Meta meta = reader.meta();
    nn::GPTConfig c;
    c.n_layer = meta.model.at("n_layer");
    c.n_head = meta.model.at("n_head");
    c.n_embd = meta.model.at("n_embd");
    c.vocab_size = meta.model.at("vocab_size");
    c.max_seq_len = meta.model.at("max_seq_len");
    const parallel::Precision precision = parallel::parse_precision(argc == 6 ? argv[5] : meta.param_dtype);
    c.param_dtype = c.compute_dtype = parallel::precision_dtype(precision);
    nn::GPT model(c, Device::cpu(), 7 + static_cast<uint64_t>(comm->rank()));  // different from the checkpoint
    parallel::DataParallelOptions o;
    o.stage = std::atoi(argv[4]);
    o.precision = precision;
    {
      parallel::DataParallel dp(model, comm, o);
      optim::AdamW opt(dp.param_groups(0.1f));
      opt.init_state();
      checkpoint::resume_engine(reader, model, opt, dp);
      meta.world_size = dp.world_size();
      meta.zero_stage = o.stage;
      checkpoint::record_engine_state(dp, meta);
      const auto path = checkpoint::save(
          argv[3], meta, checkpoint::owned_pieces(model, opt, dp.rank(), dp.world_size(), o.stage == 0), comm.get());
      if (comm->rank() == 0) std::printf("resaved %s at world %d stage %d\n", path.c_str(), dp.world_size(), o.stage);
    }
    comm::destroy_process_group();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ckpt_worker: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
