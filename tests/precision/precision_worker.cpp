// One rank of the mixed-precision training checks (test_mixed_precision.cpp
// starts it alone, with no launcher, or as 2 ranks with a launcher's
// environment). For bf16 and f16 and every ZeRO stage it trains a small GPT
// on the CPU through the real engine (parallel::DataParallel) and prints
//   check <name> <value> <limit>
// lines; the test requires value <= limit for every line on every rank.
//
// What is checked, per precision and stage, over 5 steps:
//  - the model's parameters are in the low dtype, the engine's masters f32;
//  - after every step, every master element rounded to the low dtype is the
//    parameter element the model computes with (bit for bit);
//  - f16: the loss scale starts at 1024, doubles after 2 good steps, and a
//    planted Inf gradient (rank 0, step 3, written from a grad-ready hook
//    that runs before the engine's, so it reaches the reduction) makes every
//    rank skip that step, leave the masters untouched and halve the scale;
//  - every other step updates the masters, and no other step is skipped;
//    the loss stays finite.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "dtrain/comm/init.h"
#include "dtrain/nn/gpt.h"
#include "dtrain/ops.h"
#include "dtrain/optim/adamw.h"
#include "dtrain/parallel/data_parallel.h"
#include "small_gpt.h"

using namespace dtrain;

namespace {

int g_rank = 0;

void report(const std::string& name, double value, double limit) {
  std::printf("check %s %.9g %.9g\n", name.c_str(), value, limit);
}

// Rows [row0, row0 + rows) of step `step`'s global batch: inputs and next-token targets.
std::pair<Tensor, Tensor> batch(int step, int64_t row0, int64_t rows, int64_t t, int64_t vocab) {
  Tensor x = Tensor::empty({rows, t}, DType::i32), y = Tensor::empty({rows, t}, DType::i32);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i <= t; ++i) {
      const int64_t token = ((row0 + r) * 7 + i * 3 + step * 5 + (i * i) % 11) % vocab;
      if (i < t) x.set_item(r * t + i, static_cast<double>(token));
      if (i > 0) y.set_item(r * t + i - 1, static_cast<double>(token));
    }
  }
  return {x, y};
}

// Float bits, so NaN and signed zeros compare exactly.
uint32_t bits(float v) {
  uint32_t b;
  std::memcpy(&b, &v, sizeof(b));
  return b;
}

// Elements where a master (this rank's shard, f32) rounded to dt differs from
// the parameter the model computes with. full_parameters() is collective.
int64_t master_mismatches(parallel::DataParallel& dp, DType dt) {
  std::map<std::string, Tensor> full;
  for (auto& [name, t] : dp.full_parameters()) full[name] = t.flatten();
  int64_t bad = 0;
  for (const optim::ParamGroup& g : dp.param_groups(0.0f)) {
    for (const optim::ParamRef& ref : g.params) {
      // "name" (the whole parameter) or "name[a:b]" (a shard's slice of it).
      std::string name = ref.name;
      int64_t offset = 0;
      if (const size_t open = name.find('['); open != std::string::npos) {
        offset = std::stoll(name.substr(open + 1));
        name = name.substr(0, open);
      }
      const Tensor master = ref.value.flatten();
      Tensor low = Tensor::empty(master.shape(), dt), back = Tensor::empty(master.shape());
      ops::cast(low, master);
      ops::cast(back, low);
      const Tensor param = full.at(name).narrow(offset, master.numel());
      const float* a = back.data<float>();
      const float* b = param.data<float>();
      for (int64_t i = 0; i < master.numel(); ++i) bad += bits(a[i]) != bits(b[i]) ? 1 : 0;
    }
  }
  return bad;
}

std::vector<Tensor> snapshot_masters(parallel::DataParallel& dp) {
  std::vector<Tensor> out;
  for (const optim::ParamGroup& g : dp.param_groups(0.0f))
    for (const optim::ParamRef& ref : g.params) out.push_back(ref.value.clone());
  return out;
}

int64_t changed_elements(const std::vector<Tensor>& before, const std::vector<Tensor>& after) {
  int64_t changed = 0;
  for (size_t i = 0; i < before.size(); ++i) {
    const float* a = before[i].data<float>();
    const float* b = after[i].data<float>();
    for (int64_t j = 0; j < before[i].numel(); ++j) changed += bits(a[j]) != bits(b[j]) ? 1 : 0;
  }
  return changed;
}

void run_case(const std::shared_ptr<comm::Communicator>& comm, parallel::Precision precision, int stage) {
  const bool f16 = precision == parallel::Precision::f16;
  const DType dt = f16 ? DType::f16 : DType::bf16;
  const std::string tag = std::string(parallel::precision_name(precision)) + "_stage" + std::to_string(stage) + "_";
  const nn::GPTConfig config = testing::small_gpt(dt, 16, 32, 8);
  nn::GPT model(config, Device::cpu(), 7);
  // Registered before the engine's hooks, so it runs first: the Inf is in the
  // gradient the engine then reduces, as an overflow in backward would be.
  nn::Parameter* target = nullptr;
  for (auto& np : model.named_parameters())
    if (np.name == "ln_f.weight") target = np.param;
  bool plant = false;
  model.add_grad_ready_hook([&](nn::Parameter& p) {
    if (plant && &p == target && comm->rank() == 0) p.grad.set_item(0, INFINITY);
  });
  parallel::DataParallelOptions o;
  o.stage = stage;
  o.precision = precision;
  o.initial_loss_scale = 1024.0f;
  o.loss_scale_window = 2;
  parallel::DataParallel dp(model, comm, o);
  optim::AdamW opt(dp.param_groups(0.1f));

  int64_t wrong_dtypes = 0;
  for (auto& np : model.named_parameters()) wrong_dtypes += np.param->dtype() != dt ? 1 : 0;
  for (const optim::ParamGroup& g : dp.param_groups(0.0f))
    for (const optim::ParamRef& ref : g.params) wrong_dtypes += ref.value.dtype() != DType::f32 ? 1 : 0;
  report(tag + "wrong_dtypes", static_cast<double>(wrong_dtypes), 0);
  int64_t mismatches = master_mismatches(dp, dt);

  const int world = comm->size();
  const int64_t global_rows = 4, rows = global_rows / world, t = config.max_seq_len;
  const int kSteps = 5, kPlanted = 3;
  // f16 scale used by each step: 1024, 1024, then doubled after two good
  // steps, then halved by the overflow of step 3.
  const float expected_scale[kSteps] = {1024, 1024, 2048, 1024, 1024};
  int skipped = 0, skipped_planted = 0;
  double scale_err = 0, nonfinite_losses = 0;
  int64_t changed_by_skip = 0, steps_that_changed_nothing = 0;
  for (int step = 1; step <= kSteps; ++step) {
    plant = f16 && step == kPlanted;
    const auto [x, y] = batch(step, comm->rank() * rows, rows, t, config.vocab_size);
    const std::vector<Tensor> before = snapshot_masters(dp);
    const float loss = model.forward(x, y, dp.grad_scale());
    model.backward();
    const parallel::StepResult r = dp.step(opt, 1e-2f, 1.0f);
    nonfinite_losses += std::isfinite(loss) ? 0 : 1;
    skipped += r.skipped ? 1 : 0;
    const int64_t changed = changed_elements(before, snapshot_masters(dp));
    if (plant) {
      skipped_planted += r.skipped ? 1 : 0;
      changed_by_skip += changed;
    } else {
      steps_that_changed_nothing += changed == 0 ? 1 : 0;  // a real update moves this rank's masters
    }
    if (f16) scale_err = std::max(scale_err, std::fabs(static_cast<double>(r.loss_scale - expected_scale[step - 1])));
    mismatches += master_mismatches(dp, dt);
  }
  report(tag + "params_not_rounded_masters", static_cast<double>(mismatches), 0);
  report(tag + "nonfinite_losses", nonfinite_losses, 0);
  report(tag + "skipped_other_than_planted", skipped - skipped_planted, 0);
  report(tag + "steps_that_changed_no_master", static_cast<double>(steps_that_changed_nothing), 0);
  if (f16) {
    report(tag + "planted_overflow_not_skipped", 1 - skipped_planted, 0);
    report(tag + "masters_changed_by_skipped_step", static_cast<double>(changed_by_skip), 0);
    report(tag + "loss_scale_err", scale_err, 0);
  }
}

}  // namespace

int main() {
  try {
    // Under a launcher: the job's communicator; alone: this process only.
    const bool launched = std::getenv("WORLD_SIZE") != nullptr;
    std::shared_ptr<comm::Communicator> comm =
        launched ? comm::init_process_group() : comm::Communicator::single_process();
    g_rank = comm->rank();
    for (auto precision : {parallel::Precision::bf16, parallel::Precision::f16}) {
      for (int stage = 0; stage <= 3; ++stage) run_case(comm, precision, stage);
    }
    std::fflush(stdout);
    comm.reset();
    if (launched) comm::destroy_process_group();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "precision_worker rank %d: error: %s\n", g_rank, e.what());
    return 1;
  }
  return 0;
}
