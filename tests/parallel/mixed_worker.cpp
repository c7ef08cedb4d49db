// One rank of the mixed-precision engine checks, started by
// test_mixed_engine.cpp at world sizes 1 (Communicator::single_process), 2
// and 4. Prints "dp_check <name> <value> <limit>" lines (value <= limit
// passes; a NaN fails), asserted for every rank.
//
//   mixed_worker exact    bf16 and f16, every ZeRO stage: every rank trains on
//                         the same batch, so the engine's f32 averages are
//                         exact and the run must equal, bit for bit, plain
//                         single-process mixed precision (f32 masters, the
//                         gradient widened to f32, AdamW, rounded back).
//                         Clipping off, so the norm's summation order (which
//                         follows the layout) does not enter; at world size 1
//                         stage 0 also runs with clipping, the reference
//                         summing its norm over the engine's buckets; stages
//                         0-1 also with 2 micro-steps per step.
//                         With the norm kept on the device
//                         (grad_norm_on_device) and clipping: the same bits
//                         as the host path and no device-to-host read in the
//                         steps (DataParallel::host_reads; f16: one per step).
//   mixed_worker memory   bf16 and f16, every ZeRO stage: the bytes the
//                         allocator holds for model state after two steps
//                         (less the engine's pooled communication buffers)
//                         equal predict_model_state within kMemoryTol, and so
//                         does the engine's own ledger.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "dtrain/allocator.h"
#include "dtrain/comm/init.h"
#include "dtrain/nn/gpt.h"
#include "dtrain/ops.h"
#include "dtrain/optim/adamw.h"
#include "dtrain/optim/clip.h"
#include "dtrain/parallel/data_parallel.h"
#include "gate_module.h"
#include "precision/small_gpt.h"

using namespace dtrain;

namespace {

constexpr uint64_t kSeed = 99;
constexpr int kSteps = 4;
constexpr float kLr = 1e-2f;
constexpr float kWeightDecay = 0.1f;
constexpr float kLossScale = 1024.0f;  // f16; the window is longer than the run, so it stays
// Measured model state against the prediction: the prediction counts
// P / N elements per shard where the layout pads each group to a multiple of
// N, and the allocator rounds each tensor up a little; both are far below 1%
// of this model's state. A misplaced f32 gradient is 20-25% of it.
constexpr double kMemoryTol = 0.01;

int g_rank = 0;

void report(const std::string& name, double value, double limit) {
  std::printf("dp_check %s %.9g %.9g\n", name.c_str(), value, limit);
}

uint32_t bits(float v) {
  uint32_t b;
  std::memcpy(&b, &v, sizeof(b));
  return b;
}

DType dtype_of(parallel::Precision p) {
  return parallel::precision_dtype(p);
}

nn::GPTConfig config_for(parallel::Precision p) {
  return testing::small_gpt(dtype_of(p), 16, 32, 8);
}

// Step `step`'s batch, the same on every rank: inputs and next-token targets [2, 8].
std::pair<Tensor, Tensor> batch(int step) {
  const int64_t rows = 2, t = 8, vocab = 32;
  Tensor x = Tensor::empty({rows, t}, DType::i32), y = Tensor::empty({rows, t}, DType::i32);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i <= t; ++i) {
      const int64_t token = (r * 5 + i * 7 + step * 3 + (i * i) % 5) % vocab;
      if (i < t) x.set_item(r * t + i, static_cast<double>(token));
      if (i > 0) y.set_item(r * t + i - 1, static_cast<double>(token));
    }
  }
  return {x, y};
}

struct Run {
  std::vector<float> losses;
  std::unordered_map<std::string, Tensor> params;  // f32 copies of the low-precision parameters
  int64_t host_reads_in_steps = 0;                 // the engine's device-to-host reads over the steps
  float last_norm = NAN;                           // last_grad_norm() after the steps
};

// Elements (and losses) whose bits differ.
int64_t bit_differences(const Run& a, const Run& b) {
  int64_t bad = a.losses.size() == b.losses.size() && a.params.size() == b.params.size() ? 0 : 1;
  for (size_t i = 0; i < a.losses.size() && i < b.losses.size(); ++i) bad += bits(a.losses[i]) != bits(b.losses[i]);
  for (const auto& [name, t] : a.params) {
    auto it = b.params.find(name);
    if (it == b.params.end() || it->second.numel() != t.numel()) {
      ++bad;
      continue;
    }
    for (int64_t i = 0; i < t.numel(); ++i) bad += bits(t.data<float>()[i]) != bits(it->second.data<float>()[i]);
  }
  return bad;
}

// The gradients laid out as the engine's groups (layout order, zero padding), for the norm.
std::vector<Tensor> as_groups(const std::vector<parallel::GroupInfo>& groups,
                              const std::unordered_map<std::string, Tensor>& grads) {
  std::vector<Tensor> flats;
  for (const auto& g : groups) {
    Tensor flat = Tensor::zeros({g.padded_numel});
    int64_t off = 0;
    for (const auto& name : g.params) {
      const Tensor& t = grads.at(name);
      flat.narrow(off, t.numel()).copy_(t.flatten());
      off += t.numel();
    }
    flats.push_back(flat);
  }
  return flats;
}

// Plain mixed precision in one process: the model in bf16/f16, f32 masters
// and f32 gradients beside it, the engine's step order (norm, clip and
// 1 / loss scale folded into AdamW, masters rounded into the parameters).
// `layout`: the engine's groups, for the norm (needed only with clipping).
Run train_reference(parallel::Precision precision, float clip, const std::vector<parallel::GroupInfo>& layout,
                    int accum = 1) {
  const nn::GPTConfig config = config_for(precision);
  nn::GPT model(config, Device::cpu(), kSeed);
  const float scale = precision == parallel::Precision::f16 ? kLossScale : 1.0f;
  std::vector<optim::ParamGroup> groups = optim::param_groups(model, kWeightDecay);
  std::unordered_map<std::string, nn::Parameter*> by_name;
  for (auto& np : model.named_parameters()) by_name[np.name] = np.param;
  std::unordered_map<std::string, Tensor> grads32;
  for (auto& g : groups) {
    for (auto& ref : g.params) {
      Tensor master = Tensor::empty(ref.value.shape());
      ops::cast(master, ref.value);
      ref.value = master;
      ref.grad = Tensor::empty(master.shape());
      grads32[ref.name] = ref.grad;
    }
  }
  optim::AdamW opt(groups);
  Run r;
  for (int s = 0; s < kSteps; ++s) {
    model.zero_grad();
    for (int m = 0; m < accum; ++m) {  // micro-steps add into the low-precision gradients
      auto [x, y] = batch(s * 10 + m);
      r.losses.push_back(model.forward(x, y, scale / static_cast<float>(accum)));
      model.backward();
    }
    for (auto& [name, g] : grads32) ops::cast(g, by_name.at(name)->grad);
    float coefficient = 1.0f;
    if (clip > 0.0f) {
      Tensor sq = Tensor::empty({1});
      ops::global_norm_squared(sq, as_groups(layout, grads32));
      coefficient = optim::clip_scale(std::sqrt(sq.data<float>()[0]) / scale, clip);
    }
    opt.step(kLr, coefficient / scale);
    for (auto& g : opt.groups())
      for (auto& ref : g.params) ops::cast(by_name.at(ref.name)->value, ref.value);
  }
  for (auto& [name, p] : by_name) {
    Tensor v = Tensor::empty(p->value.shape());
    ops::cast(v, p->value);
    r.params[name] = v;
  }
  return r;
}

parallel::DataParallelOptions options_for(parallel::Precision precision, int stage) {
  parallel::DataParallelOptions o;
  o.stage = stage;
  o.precision = precision;
  o.initial_loss_scale = kLossScale;
  o.loss_scale_window = 1000;
  o.first_bucket_bytes = 2 << 10;  // several buckets even for this model
  o.bucket_bytes = 8 << 10;
  return o;
}

Run train_engine(const std::shared_ptr<comm::Communicator>& comm, parallel::Precision precision, int stage, float clip,
                 std::vector<parallel::GroupInfo>* layout, bool norm_on_device = false, int accum = 1) {
  nn::GPT model(config_for(precision), Device::cpu(), kSeed);
  parallel::DataParallelOptions o = options_for(precision, stage);
  o.grad_norm_on_device = norm_on_device;
  o.grad_accumulation = accum;
  parallel::DataParallel dp(model, comm, o);
  if (layout != nullptr) *layout = dp.groups();
  optim::AdamW opt(dp.param_groups(kWeightDecay));
  Run r;
  for (int s = 0; s < kSteps; ++s) {
    for (int m = 0; m < accum; ++m) {
      auto [x, y] = batch(s * 10 + m);
      r.losses.push_back(model.forward(x, y, dp.grad_scale()));
      model.backward();
    }
    const auto res = dp.step(opt, kLr, clip);
    if (res.skipped) r.losses.push_back(NAN);  // no overflow is expected: a skip fails the comparison
  }
  r.host_reads_in_steps = dp.host_reads();
  r.last_norm = dp.last_grad_norm();
  for (auto& [name, t] : dp.full_parameters()) r.params[name] = t;
  return r;
}

void run_exact(const std::shared_ptr<comm::Communicator>& comm) {
  const int world = comm->size();
  for (auto precision : {parallel::Precision::bf16, parallel::Precision::f16}) {
    const Run plain = train_reference(precision, 0.0f, {});
    const Run plain_accumulated = train_reference(precision, 0.0f, {}, 2);
    for (int stage = 0; stage <= 1; ++stage) {
      // Stages 0-1 accumulate micro-steps in the low-precision buckets, as
      // plain training does (stages 2-3 accumulate in f32: not the same bits).
      const std::string tag = std::string(parallel::precision_name(precision)) + "_stage" + std::to_string(stage) +
                              "_world" + std::to_string(world) + "_accum2";
      const Run engine = train_engine(comm, precision, stage, 0.0f, nullptr, false, 2);
      report(tag + "_bits_differing_from_plain", static_cast<double>(bit_differences(engine, plain_accumulated)), 0);
    }
    for (int stage = 0; stage <= 3; ++stage) {
      const std::string tag = std::string(parallel::precision_name(precision)) + "_stage" + std::to_string(stage) +
                              "_world" + std::to_string(world);
      report(tag + "_bits_differing_from_plain",
             static_cast<double>(bit_differences(train_engine(comm, precision, stage, 0.0f, nullptr), plain)), 0);
    }
    // The norm kept on the device: with clipping, the same bits as the
    // host path, and no device-to-host read in the steps (bf16; f16 reads
    // the norm each step for its loss scale); last_grad_norm() reads once.
    for (int stage = 0; stage <= 3; ++stage) {
      const std::string tag = std::string(parallel::precision_name(precision)) + "_stage" + std::to_string(stage) +
                              "_world" + std::to_string(world) + "_norm_on_device";
      const Run host = train_engine(comm, precision, stage, 0.05f, nullptr);
      const Run device = train_engine(comm, precision, stage, 0.05f, nullptr, true);
      const int64_t expected_reads = precision == parallel::Precision::f16 ? kSteps : 0;
      report(tag + "_bits_differing_from_host_path", static_cast<double>(bit_differences(device, host)), 0);
      report(tag + "_host_reads_in_steps_minus_expected",
             static_cast<double>(std::llabs(device.host_reads_in_steps - expected_reads)), 0);
      report(tag + "_host_path_reads_minus_steps", static_cast<double>(std::llabs(host.host_reads_in_steps - kSteps)),
             0);
      report(tag + "_last_norm_bits_differ", bits(device.last_norm) != bits(host.last_norm) ? 1.0 : 0.0, 0);
    }
    if (world == 1) {
      std::vector<parallel::GroupInfo> layout;
      const Run engine = train_engine(comm, precision, 0, 0.05f, &layout);
      const Run clipped = train_reference(precision, 0.05f, layout);
      report(std::string(parallel::precision_name(precision)) + "_stage0_world1_clipped_bits_differing_from_plain",
             static_cast<double>(bit_differences(engine, clipped)), 0);
    }
  }
}

// ---- memory -----------------------------------------------------------------------------

// Three parameters and no compute (gate_module.h): the allocator holds only
// the engine's and the optimizer's state.
class Slabs : public nn::Module {
 public:
  explicit Slabs(DType dtype) : Module("Slabs"), a(dtype, 24576), b(dtype, 8191), c(dtype, 1025) {
    add_module("a", a);
    add_module("b", b);
    add_module("c", c);
  }
  void train(double grad) {
    run_hooks(nn::HookPoint::pre_forward);
    for (testing::Gate* g : {&a, &b, &c}) g->forward();
    run_hooks(nn::HookPoint::post_forward);
    run_hooks(nn::HookPoint::pre_backward);
    for (testing::Gate* g : {&c, &b, &a}) g->backward(false, grad);
    run_hooks(nn::HookPoint::post_backward);
  }
  testing::Gate a, b, c;
};

// The allocator's live bytes once every collective so far has let go of its
// buffers: a communicator's worker thread may drop its reference to a
// finished collective's tensors a moment after the collective reports
// completion, so one more collective is run to the end (the worker runs them
// in issue order) and then the count must hold still for 10 reads.
int64_t settled_bytes(comm::Communicator& comm) {
  if (comm.size() > 1) {
    Tensor t = Tensor::zeros({1});
    comm.all_reduce(t, comm::ReduceOp::sum).wait();
  }
  int64_t last = memory_stats(Device::cpu()).current_bytes;
  for (int stable = 0, i = 0; stable < 10 && i < 400; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    const int64_t now = memory_stats(Device::cpu()).current_bytes;
    stable = now == last ? stable + 1 : 0;
    last = now;
  }
  return last;
}

double relative(int64_t measured, int64_t predicted) {
  return predicted == 0 ? INFINITY : std::fabs(static_cast<double>(measured) / static_cast<double>(predicted) - 1.0);
}

void run_memory(const std::shared_ptr<comm::Communicator>& comm) {
  const int world = comm->size();
  for (auto precision : {parallel::Precision::bf16, parallel::Precision::f16}) {
    for (int stage = 0; stage <= 3; ++stage) {
      const int64_t baseline = settled_bytes(*comm);
      int64_t measured = 0;
      parallel::MemoryLedger ledger, predicted;
      {
        Slabs model(dtype_of(precision));
        parallel::DataParallelOptions o = options_for(precision, stage);
        o.bucket_bytes = 32 << 10;
        parallel::DataParallel dp(model, comm, o);
        optim::AdamW opt(dp.param_groups(kWeightDecay));
        for (int s = 0; s < 2; ++s) {
          model.train(0.01 * (comm->rank() + 1) * static_cast<double>(dp.grad_scale()));
          dp.step(opt, kLr, 1.0f);
        }
        dp.wait_for_parameters();
        ledger = dp.ledger(&opt);
        predicted = dp.predicted();
        measured = settled_bytes(*comm) - baseline - ledger.comm_buffers;
      }
      const std::string tag = std::string(parallel::precision_name(precision)) + "_stage" + std::to_string(stage) +
                              "_world" + std::to_string(world);
      if (g_rank == 0) {
        std::printf("%s: model state %lld bytes held (%.2f B/param), predicted %lld (%.2f B/param)\n", tag.c_str(),
                    static_cast<long long>(measured), static_cast<double>(measured) / 33792.0,
                    static_cast<long long>(predicted.model_state()),
                    static_cast<double>(predicted.model_state()) / 33792.0);
      }
      report(tag + "_allocator_vs_predicted_rel_err", relative(measured, predicted.model_state()), kMemoryTol);
      report(tag + "_ledger_vs_predicted_rel_err", relative(ledger.model_state(), predicted.model_state()), kMemoryTol);
      report(tag + "_ledger_gradients_vs_predicted_rel_err", relative(ledger.gradients, predicted.gradients),
             kMemoryTol);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string mode = argc > 1 ? argv[1] : "";
    const char* world_env = std::getenv("WORLD_SIZE");
    const bool launched = world_env != nullptr && std::atoi(world_env) > 1;
    std::shared_ptr<comm::Communicator> comm =
        launched ? comm::init_process_group() : comm::Communicator::single_process();
    g_rank = comm->rank();
    if (mode == "exact") {
      run_exact(comm);
    } else if (mode == "memory") {
      run_memory(comm);
    } else {
      std::fprintf(stderr, "usage: mixed_worker exact|memory\n");
      return 2;
    }
    std::fflush(stdout);
    comm.reset();
    if (launched) comm::destroy_process_group();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mixed_worker rank %d: error: %s\n", g_rank, e.what());
    return 1;
  }
  return 0;
}
