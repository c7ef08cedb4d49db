// One rank of the data-parallel tests, started by test_parallel with
// RANK/WORLD_SIZE/MASTER_* set. Every rank also trains a single-process
// reference model locally (the whole global batch, no communication), so it
// can compare its data-parallel run with it. Every rank prints its own results as
//   dp_check <name> <value> <limit>
// lines (value <= limit passes; a NaN fails), which the Catch2 test asserts
// one by one for every rank.
//
//   dp_worker train [--accum 1,2] [--stages 0,1,2,3]   equality, ledger, overlap
//   dp_worker edges                                   unused parameter, gradients out of bucket order,
//                                                     buckets issued in the observed ready order
//   dp_worker mismatch                                ranks disagree -> error on all ranks
//   dp_worker limit                                   a model over the memory limit trains at ZeRO-3 (deferred)
// Exit codes: 0 done (checks printed), 2 setup failure, 3 expected error raised, 4 it did not.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "compare.h"
#include "dtrain/allocator.h"
#include "dtrain/comm/init.h"
#include "dtrain/nn/gpt.h"
#include "dtrain/ops.h"
#include "dtrain/optim/adamw.h"
#include "dtrain/optim/clip.h"
#include "dtrain/parallel/data_parallel.h"
#include "gate_module.h"

using namespace dtrain;
using dtrain::testing::Gate;

namespace {

constexpr int kSteps = 10;
constexpr int64_t kGlobalBatch = 12;  // divisible by 1, 2, 3, 4 and by 2 x accumulation 2
constexpr int64_t kSeqLen = 8;
constexpr float kLr = 3e-3f;
constexpr float kClip = 0.5f;  // low enough that clipping is active in the first steps
constexpr float kWeightDecay = 0.1f;
constexpr uint64_t kSeed = 4242;

// Stated f32 tolerances on the normalised error (tests/compare.h): reduction
// order differs (averaging across ranks, the norm over shards), AdamW
// amplifies that a little over 10 steps. Measured: ~1e-7 in the loss, ~7e-6
// in the parameters.
constexpr double kLossTol = 1e-5;
constexpr double kParamTol = 2e-5;

int g_rank = 0;

void report(const std::string& name, double value, double limit) {
  std::printf("dp_check %s %.9g %.9g\n", name.c_str(), value, limit);
}

// The larger of two errors, where a NaN is the largest (std::max drops it).
double worse(double a, double b) {
  return (std::isnan(b) || b > a) ? b : a;
}

nn::GPTConfig tiny_config() {
  nn::GPTConfig c;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 32;
  c.vocab_size = 64;
  c.max_seq_len = 16;
  return c;
}

// Rows [row0, row0 + rows) of step `step`'s global batch: inputs and targets [rows, T].
std::pair<Tensor, Tensor> batch_rows(int step, int64_t row0, int64_t rows) {
  std::mt19937 rng(static_cast<uint32_t>(1000 + step));
  std::uniform_int_distribution<int32_t> tok(0, 63);
  std::vector<int32_t> all(static_cast<size_t>(kGlobalBatch * (kSeqLen + 1)));
  for (auto& t : all) t = tok(rng);
  Tensor x = Tensor::empty({rows, kSeqLen}, DType::i32), y = Tensor::empty({rows, kSeqLen}, DType::i32);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t t = 0; t < kSeqLen; ++t) {
      const size_t base = static_cast<size_t>((row0 + r) * (kSeqLen + 1) + t);
      x.data<int32_t>()[r * kSeqLen + t] = all[base];
      y.data<int32_t>()[r * kSeqLen + t] = all[base + 1];
    }
  }
  return {x, y};
}

struct Run {
  std::vector<float> losses;
  std::vector<float> norms;
  std::vector<std::pair<std::string, Tensor>> initial;  // before the first step
  std::vector<std::pair<std::string, Tensor>> params;   // after the last
};

Run train_reference() {
  nn::GPT model(tiny_config(), Device::cpu(), kSeed);
  optim::AdamW opt(optim::param_groups(model, kWeightDecay));
  Run r;
  for (auto& np : model.named_parameters()) r.initial.emplace_back(np.name, np.param->value.clone());
  for (int s = 0; s < kSteps; ++s) {
    auto [x, y] = batch_rows(s, 0, kGlobalBatch);
    model.zero_grad();
    r.losses.push_back(model.forward(x, y));
    model.backward();
    const float norm = optim::grad_norm(opt.grads());
    r.norms.push_back(norm);
    opt.step(kLr, optim::clip_scale(norm, kClip));
  }
  for (auto& np : model.named_parameters()) r.params.emplace_back(np.name, np.param->value.clone());
  return r;
}

// Normalised error of a against b (Inf on a NaN/Inf or a shape mismatch).
double error_of(const Tensor& a, const Tensor& b) {
  return testing::compare(a, b, 0.0).error;
}

// Stage 0: the first bucket's collective is issued before backward ends.
// Returns (backward end - first reduce start) in µs of the last backward (> 0: overlapped).
double stage0_overlap_margin(const std::vector<parallel::TraceEvent>& ev) {
  const parallel::TraceEvent* bw = nullptr;
  for (const auto& e : ev) {
    if (e.kind == "backward") bw = &e;
  }
  if (bw == nullptr) return -1;
  for (const auto& e : ev) {
    if (e.kind == "reduce" && e.start_us >= bw->start_us) return bw->end_us - e.start_us;
  }
  return -1;
}

// Stage 3: for consecutive unit computations A then B (B != A), B's gather
// (the last one issued before B computes) was issued before A finished
// computing: the prefetch. Returns how many such pairs the trace holds.
int stage3_prefetch_overlaps(const std::vector<parallel::TraceEvent>& ev) {
  std::vector<const parallel::TraceEvent*> computes;
  for (const auto& e : ev) {
    if (e.kind == "compute") computes.push_back(&e);
  }
  int n = 0;
  for (size_t i = 1; i < computes.size(); ++i) {
    const auto* a = computes[i - 1];
    const auto* b = computes[i];
    if (a->name == b->name) continue;
    const parallel::TraceEvent* gather = nullptr;
    for (const auto& g : ev) {
      if (g.kind == "gather" && g.name == b->name && g.start_us <= b->start_us) gather = &g;
    }
    if (gather != nullptr && gather->start_us < a->end_us && gather->start_us > a->start_us - 1e6) ++n;
  }
  return n;
}

// Engine variants beyond the defaults (equality only).
struct Variant {
  bool overlap = true;
  int prefetch = 1;
  bool checkpointing = false;
  bool deferred = false;             // the model built under nn::DeferredInit, initialised by the engine
  bool recompute_layernorm = false;  // GPT::set_recompute_layernorm: gathers for the recompute in backward
  std::string suffix() const {
    std::string s;
    if (!overlap) s += "_no_overlap";
    if (prefetch != 1) s += "_prefetch" + std::to_string(prefetch);
    if (checkpointing) s += "_checkpointing";
    if (deferred) s += "_deferred";
    if (recompute_layernorm) s += "_recompute_layernorm";
    return s;
  }
};

// The largest group's bytes when gathered in full (f32).
int64_t largest_group_bytes(const parallel::DataParallel& dp) {
  int64_t most = 0;
  for (const auto& g : dp.groups()) most = std::max(most, g.padded_numel * 4);
  return most;
}

// A deferred model: the engine's initial parameters equal, bit for bit, the
// model built whole with the same seed, whatever the world size; at stage 3
// the start-up peak (model construction to the engine built) stays within
// model state / N plus the gathered units (one and the prefetch). A model
// built whole holds its full parameters and gradients (8P bytes) at start-up,
// over the bound at world sizes 2 and 4.
void check_deferred_start(parallel::DataParallel& dp, const Run& ref, const std::string& tag, int64_t startup_peak,
                          int prefetch) {
  // This rank's model state as the ledger measures it once the engine is
  // built, before the optimizer (at stage 3 the shards: model state / N).
  const int64_t state = dp.ledger().model_state();
  const auto initial = dp.full_parameters();
  double err = initial.size() == ref.initial.size() ? 0.0 : INFINITY;
  for (size_t i = 0; i < initial.size() && i < ref.initial.size(); ++i) {
    if (initial[i].first != ref.initial[i].first) err = INFINITY;
    err = worse(err, error_of(initial[i].second, ref.initial[i].second));
  }
  report(tag + "_initial_param_error", err, 0.0);
  if (dp.options().stage != 3) return;
  const int64_t bound = state + (1 + prefetch) * largest_group_bytes(dp);
  if (g_rank == 0) {
    std::printf("stage 3 deferred start-up at world %d: peak %lld bytes, bound %lld (model state / N %lld)\n",
                dp.world_size(), static_cast<long long>(startup_peak), static_cast<long long>(bound),
                static_cast<long long>(state));
  }
  report(tag + "_startup_peak_minus_bound_bytes", static_cast<double>(startup_peak - bound), 0.0);
}

// A bf16 model built deferred at stage 3: each rank's bf16 shard (and so its
// f32 master) holds the whole bf16 model's values bit for bit, and a step of
// mixed-precision training runs.
void run_deferred_bf16(const std::shared_ptr<comm::Communicator>& comm) {
  nn::GPTConfig config = tiny_config();
  config.param_dtype = config.compute_dtype = DType::bf16;
  nn::GPT whole(config, Device::cpu(), kSeed);
  std::optional<nn::DeferredInit> deferred(std::in_place);
  nn::GPT model(config, Device::cpu(), kSeed);
  deferred.reset();
  parallel::DataParallelOptions o;
  o.stage = 3;
  o.precision = parallel::Precision::bf16;
  parallel::DataParallel dp(model, comm, o);
  optim::AdamW opt(dp.param_groups(kWeightDecay));
  const auto initial = dp.full_parameters();
  const auto ref = whole.named_parameters();
  double err = initial.size() == ref.size() ? 0.0 : INFINITY;
  for (size_t i = 0; i < initial.size() && i < ref.size(); ++i) {
    if (initial[i].first != ref[i].name) err = INFINITY;
    err = worse(err, error_of(initial[i].second, ref[i].param->value));
  }
  const std::string tag = "stage3_world" + std::to_string(comm->size()) + "_deferred_bf16";
  report(tag + "_initial_param_error", err, 0.0);
  auto [x, y] = batch_rows(0, comm->rank() * 2, 2);
  const float loss = dp.average(model.forward(x, y, dp.grad_scale()));
  model.backward();
  const auto r = dp.step(opt, kLr, kClip);
  report(tag + "_loss_and_norm_not_finite", std::isfinite(loss) && std::isfinite(r.grad_norm) ? 0.0 : 1.0, 0.0);
}

void run_stage(const std::shared_ptr<comm::Communicator>& comm, const Run& ref, int stage, int accum,
               const Variant& variant = {}) {
  const int world = comm->size();
  // Each rank initialises differently; the engine starts everyone from rank
  // 0's weights (kSeed, as the reference), so equality also tests that.
  // (A deferred model starts from kSeed on every rank, initialised in place.)
  nn::GPTConfig config = tiny_config();
  config.checkpoint_activations = variant.checkpointing;
  const int64_t baseline = memory_stats(Device::cpu()).current_bytes;
  reset_peak_memory(Device::cpu());
  std::optional<nn::DeferredInit> deferred;
  if (variant.deferred) deferred.emplace();
  nn::GPT model(config, Device::cpu(), variant.deferred ? kSeed : kSeed + static_cast<uint64_t>(comm->rank()));
  deferred.reset();
  model.set_recompute_layernorm(variant.recompute_layernorm);
  parallel::DataParallelOptions o;
  o.stage = stage;
  o.overlap = variant.overlap;
  o.prefetch_depth = variant.prefetch;
  o.grad_accumulation = accum;
  o.first_bucket_bytes = 4 << 10;  // several buckets even for the tiny model
  o.bucket_bytes = 16 << 10;
  o.trace = true;
  parallel::DataParallel dp(model, comm, o);
  const int64_t startup_peak = memory_stats(Device::cpu()).peak_bytes - baseline;
  optim::AdamW opt(dp.param_groups(kWeightDecay));
  const std::string tag = "stage" + std::to_string(stage) + "_world" + std::to_string(world) + "_accum" +
                          std::to_string(accum) + variant.suffix();
  if (variant.deferred) check_deferred_start(dp, ref, tag, startup_peak, variant.prefetch);
  const int64_t local = kGlobalBatch / world;
  const int64_t micro_rows = local / accum;
  std::vector<double> losses, norms;
  for (int s = 0; s < kSteps; ++s) {
    float loss_sum = 0;
    for (int m = 0; m < accum; ++m) {
      auto [x, y] = batch_rows(s, comm->rank() * local + m * micro_rows, micro_rows);
      loss_sum += model.forward(x, y, dp.grad_scale());
      model.backward();
    }
    const float loss = dp.average(loss_sum / static_cast<float>(accum));
    const auto res = dp.step(opt, kLr, kClip);
    losses.push_back(loss);
    norms.push_back(res.grad_norm);
  }
  const double loss_diff = testing::compare(losses, testing::as_doubles(ref.losses), 0.0).error;
  const double norm_diff = testing::compare(norms, testing::as_doubles(ref.norms), 0.0).error;
  const auto params = dp.full_parameters();
  double param_diff = params.size() == ref.params.size() ? 0.0 : INFINITY;
  for (size_t i = 0; i < params.size() && i < ref.params.size(); ++i) {
    if (params[i].first != ref.params[i].first) param_diff = INFINITY;
    param_diff = worse(param_diff, error_of(params[i].second, ref.params[i].second));
  }
  report(tag + "_loss_error", loss_diff, kLossTol);
  report(tag + "_grad_norm_error", norm_diff, kLossTol * 10);
  report(tag + "_param_error", param_diff, kParamTol);

  if (!variant.suffix().empty()) return;
  if (accum == 1 && (world == 2 || world == 4)) {
    const auto m = dp.ledger(&opt);
    const auto p = dp.predicted();
    if (g_rank == 0) std::printf("%s", parallel::format_ledger(m, p, stage, world).c_str());  // once is enough
    auto rel = [](int64_t a, int64_t b) {
      return b == 0 ? (a == 0 ? 0.0 : INFINITY) : std::fabs(static_cast<double>(a) / static_cast<double>(b) - 1.0);
    };
    report(tag + "_ledger_parameters_rel_err", rel(m.parameters, p.parameters), 0.05);
    report(tag + "_ledger_gradients_rel_err", rel(m.gradients, p.gradients), 0.05);
    report(tag + "_ledger_optimizer_rel_err", rel(m.optimizer_state, p.optimizer_state), 0.05);
    report(tag + "_ledger_model_state_rel_err", rel(m.model_state(), p.model_state()), 0.05);
  }
  if (accum == 1 && world == 2 && stage == 0) {
    const double margin = stage0_overlap_margin(dp.trace()->events());
    if (g_rank == 0) std::printf("stage 0: first bucket all-reduce issued %.1f us before backward ended\n", margin);
    report(tag + "_first_bucket_starts_after_backward_end_us", -margin, -1e-3);
    report(tag + "_buckets_minus_2", -static_cast<double>(dp.groups().size()), -3);
  }
  if (accum == 1 && world == 2 && stage == 3) {
    const int n = stage3_prefetch_overlaps(dp.trace()->events());
    if (g_rank == 0) std::printf("stage 3: %d gathers issued while another unit computed\n", n);
    report(tag + "_prefetched_gathers_negated", -n, -1);
  }
}

// ---- mismatch ------------------------------------------------------------------------

// Two gates in bf16/f16: the mixed-precision plumbing (low-precision
// parameters and gradients, f32 master, f32 reductions, loss scaling) without
// compute ops, which are f32-only on the CPU.
class Gates : public nn::Module {
 public:
  explicit Gates(DType dtype) : Module("Gates"), g1(dtype, 8), g2(dtype, 5) {
    add_module("g1", g1);
    add_module("g2", g2);
    g1.w.value.fill_(1.0);
    g2.w.value.fill_(1.0);
  }
  void train(double grad) {
    run_hooks(nn::HookPoint::pre_forward);
    g1.forward();
    g2.forward();
    run_hooks(nn::HookPoint::post_forward);
    run_hooks(nn::HookPoint::pre_backward);
    g2.backward(false, grad);
    g1.backward(false, grad);
    run_hooks(nn::HookPoint::post_backward);
  }
  Gate g1, g2;
};

// Rank r's gradient is (r + 1) / 4 x grad_scale, so the average over 2 ranks
// is 0.375 x scale. AdamW's first step moves each weight by lr x sign(g):
// 1 -> 0.875, exact in bf16 and f16. f16 starts at loss scale 2^17: rank 1's
// 0.5 x 2^17 overflows f16 (max 65504), so the first step is skipped and the
// scale halves; the second step applies.
void run_mixed(const std::shared_ptr<comm::Communicator>& comm) {
  for (int stage = 0; stage <= 3; ++stage) {
    for (auto precision : {parallel::Precision::bf16, parallel::Precision::f16}) {
      const DType dt = precision == parallel::Precision::bf16 ? DType::bf16 : DType::f16;
      Gates model(dt);
      parallel::DataParallelOptions o;
      o.stage = stage;
      o.precision = precision;
      o.initial_loss_scale = 131072.0f;
      parallel::DataParallel dp(model, comm, o);
      optim::AdamW opt(dp.param_groups(0.0f));
      const std::string tag =
          std::string("mixed_") + parallel::precision_name(precision) + "_stage" + std::to_string(stage);
      int skipped = 0;
      float norm = 0;
      for (int s = 0; s < (precision == parallel::Precision::f16 ? 2 : 1); ++s) {
        model.train((comm->rank() + 1) / 4.0 * static_cast<double>(dp.grad_scale()));
        const auto r = dp.step(opt, 0.125f, 0.0f);
        skipped += r.skipped ? 1 : 0;
        norm = r.grad_norm;
      }
      double err = 0;
      for (auto& [name, t] : dp.full_parameters()) {
        for (float v : t.to_vector()) err = worse(err, std::fabs(v - 0.875));
      }
      report(tag + "_param_err", err, 1e-3);
      report(tag + "_grad_norm_err", std::fabs(static_cast<double>(norm) - 0.375 * std::sqrt(13.0)), 1e-3);
      report(tag + "_skipped_steps_err", std::abs(skipped - (precision == parallel::Precision::f16 ? 1 : 0)), 0);
    }
  }
}

class Toy : public nn::Module {
 public:
  Toy() : Module("Toy"), a(8, 8) {
    add_module("a", a);
    add_module("gate", gate);
  }
  void train(const Tensor& x, bool skip_gate, bool extra_forward) {
    run_hooks(nn::HookPoint::pre_forward);
    a.forward(x);
    if (extra_forward) a.forward(x);
    gate.forward();
    run_hooks(nn::HookPoint::post_forward);
    run_hooks(nn::HookPoint::pre_backward);
    Tensor dout = Tensor::full({4, 8}, 1.0), none;
    gate.backward(skip_gate);
    a.backward(dout, none);
    run_hooks(nn::HookPoint::post_backward);
  }
  nn::Linear a;
  Gate gate;
};

int run_mismatch(const std::shared_ptr<comm::Communicator>& comm) {
  int raised = 0, cases = 0;
  for (int stage = 0; stage <= 3; ++stage) {
    for (int kind = 0; kind < (stage == 0 ? 2 : 1); ++kind) {  // kind 1: a module ran twice on rank 1
      ++cases;
      Toy toy;
      parallel::DataParallelOptions o;
      o.stage = stage;
      parallel::DataParallel dp(toy, comm, o);
      Tensor x = Tensor::full({4, 8}, 0.5);
      const bool odd = comm->rank() == 1;
      try {
        toy.train(x, kind == 0 && odd, kind == 1 && odd);
        std::printf("rank %d stage %d: no error raised\n", comm->rank(), stage);
      } catch (const Error& e) {
        std::printf("rank %d stage %d: error: %s\n", comm->rank(), stage, e.what());
        ++raised;
      }
    }
  }
  if (comm->size() == 2) run_mixed(comm);
  std::fflush(stdout);
  return raised == cases ? 3 : 4;
}

// ---- edges: an unused parameter, gradients out of bucket order ---------------------

// y = left(x) + right(x), plus a layer `unused` that no rank ever runs (a
// frozen branch). Buckets are laid out for gradients arriving in reverse
// registration order (unused, right, left), so the layout puts the unused
// layer's buckets first; backward can also report left before right, so
// every bucket completes out of layout order.
class Branches : public nn::Module {
 public:
  Branches() : Module("Branches"), left(6, 5), right(6, 5), unused(6, 5) {
    add_module("left", left);
    add_module("right", right);
    add_module("unused", unused);
    // Non-zero starting values (Linear starts at zero), so weight decay would show.
    int64_t k = 0;
    for (auto& np : named_parameters()) {
      for (int64_t i = 0; i < np.param->value.numel(); ++i) np.param->value.set_item(i, 0.2 * std::sin(0.37 * ++k));
    }
  }
  // Loss = sum(target_weights * y); returns it.
  float train(const Tensor& x, const Tensor& dout, bool registration_order) {
    run_hooks(nn::HookPoint::pre_forward);
    const Tensor& a = left.forward(x);
    const Tensor& b = right.forward(x);
    double loss = 0;
    for (int64_t i = 0; i < a.numel(); ++i) loss += (a.item(i) + b.item(i)) * dout.item(i);
    run_hooks(nn::HookPoint::post_forward);
    run_hooks(nn::HookPoint::pre_backward);
    Tensor none;
    if (registration_order) {
      left.backward(dout, none);
      right.backward(dout, none);
    } else {
      right.backward(dout, none);
      left.backward(dout, none);
    }
    run_hooks(nn::HookPoint::post_backward);
    return static_cast<float>(loss);
  }
  nn::Linear left, right, unused;
};

constexpr int64_t kEdgeRows = 4;  // per rank
constexpr int kEdgeSteps = 3;

// Rank r's rows of step s: inputs and the loss weights.
std::pair<Tensor, Tensor> edge_batch(int step, int64_t row0, int64_t rows) {
  Tensor x = Tensor::empty({rows, 6}), w = Tensor::empty({rows, 5});
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < 6; ++i)
      x.set_item(r * 6 + i, std::sin(0.7 * static_cast<double>((row0 + r) * 6 + i + step)));
    for (int64_t i = 0; i < 5; ++i)
      w.set_item(r * 5 + i, std::cos(0.3 * static_cast<double>((row0 + r) * 5 + i - step)));
  }
  return {x, w};
}

bool in_unused_layer(const std::string& name) {
  return name.rfind("unused.", 0) == 0;
}

// Plain model + AdamW on the whole global batch (no engine), the reference.
// The unused layer gets no gradient, so (as PyTorch's optimizers skip a
// parameter whose gradient is None) the optimizer does not hold it: no
// update, no weight decay.
std::vector<std::pair<std::string, Tensor>> train_edges_reference(int world, bool registration_order) {
  Branches model;
  auto groups = optim::param_groups(model, kWeightDecay);
  for (auto& g : groups) {
    auto held = std::remove_if(g.params.begin(), g.params.end(),
                               [](const optim::ParamRef& p) { return in_unused_layer(p.name); });
    g.params.erase(held, g.params.end());
  }
  optim::AdamW opt(groups);
  for (int s = 0; s < kEdgeSteps; ++s) {
    model.zero_grad();
    // The engine averages per-rank gradients of per-rank sums: scale by 1/world.
    auto [x, w] = edge_batch(s, 0, kEdgeRows * world);
    ops::scale(w, w, 1.0f / static_cast<float>(world));
    model.train(x, w, registration_order);
    opt.step(kLr);
  }
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& np : model.named_parameters()) out.emplace_back(np.name, np.param->value.clone());
  return out;
}

// The bucket order a backward's gradients imply: each bucket at the moment
// its last parameter became ready (`ready`: parameter names in the order the
// model reported them), then the buckets that never completed (the unused
// layer's) in layout order.
std::vector<std::string> buckets_in_ready_order(const std::vector<parallel::GroupInfo>& groups,
                                                const std::vector<std::string>& ready) {
  std::vector<std::string> order;
  std::vector<size_t> missing(groups.size());
  for (size_t g = 0; g < groups.size(); ++g) missing[g] = groups[g].params.size();
  for (const auto& name : ready) {
    for (size_t g = 0; g < groups.size(); ++g) {
      const auto& ps = groups[g].params;
      if (std::find(ps.begin(), ps.end(), name) != ps.end() && --missing[g] == 0) order.push_back(groups[g].name);
    }
  }
  for (size_t g = 0; g < groups.size(); ++g) {
    if (missing[g] != 0) order.push_back(groups[g].name);
  }
  return order;
}

// From one backward's trace: the buckets in the order their reductions were
// issued, and how many buckets holding only used parameters were issued
// after the backward's compute ended (waiting for a bucket that completes
// only then).
struct Launches {
  std::vector<std::string> order;
  int used_issued_late = 0;
};
Launches launches_of(const std::vector<parallel::TraceEvent>& ev, const std::vector<parallel::GroupInfo>& groups) {
  Launches out;
  double backward_end = -1;
  for (const auto& e : ev) {
    if (e.kind == "backward") backward_end = e.end_us;
  }
  for (const auto& e : ev) {
    if (e.kind != "reduce") continue;
    out.order.push_back(e.name);
    for (const auto& g : groups) {
      const bool used = std::none_of(g.params.begin(), g.params.end(), in_unused_layer);
      if (g.name == e.name && used && !(e.start_us < backward_end)) ++out.used_issued_late;
    }
  }
  return out;
}

void run_edges(const std::shared_ptr<comm::Communicator>& comm) {
  const int world = comm->size();
  for (bool registration_order : {false, true}) {
    const auto ref = train_edges_reference(world, registration_order);
    for (int stage = 0; stage <= 3; ++stage) {
      Branches model;
      std::vector<std::pair<std::string, Tensor>> initial;
      std::unordered_map<const nn::Parameter*, std::string> name_of;
      for (auto& np : model.named_parameters()) {
        initial.emplace_back(np.name, np.param->value.clone());
        name_of[np.param] = np.name;
      }
      std::vector<std::string> ready;  // this backward's gradients, in the order reported
      model.add_grad_ready_hook([&](nn::Parameter& p) { ready.push_back(name_of.at(&p)); });
      parallel::DataParallelOptions o;
      o.stage = stage;
      o.first_bucket_bytes = 64;  // one bucket per layer or less
      o.bucket_bytes = 64;
      o.trace = true;
      parallel::DataParallel dp(model, comm, o);
      optim::AdamW opt(dp.param_groups(kWeightDecay));
      const std::string tag = std::string("edges_") + (registration_order ? "out_of_bucket_order" : "bucket_order") +
                              "_unused_param_stage" + std::to_string(stage) + "_world" + std::to_string(world);
      std::vector<std::string> first_ready_order;
      int order_mismatches = 0, used_issued_late = 0;
      for (int s = 0; s < kEdgeSteps; ++s) {
        ready.clear();
        const size_t first_event = dp.trace()->events().size();
        auto [x, w] = edge_batch(s, comm->rank() * kEdgeRows, kEdgeRows);
        model.train(x, w, registration_order);
        auto events = dp.trace()->events();
        events.erase(events.begin(), events.begin() + static_cast<std::ptrdiff_t>(first_event));
        const Launches l = launches_of(events, dp.groups());
        if (s == 0) first_ready_order = buckets_in_ready_order(dp.groups(), ready);
        if (s > 0 && stage <= 2) {
          // After the first step the buckets are issued in the order the
          // first backward completed them, the unused layer's last.
          if (l.order != first_ready_order) ++order_mismatches;
          used_issued_late += l.used_issued_late;
        }
        dp.step(opt, kLr);
      }
      if (stage <= 2) {
        report(tag + "_launch_order_mismatches", order_mismatches, 0);
        report(tag + "_used_buckets_issued_after_backward", used_issued_late, 0);
      }
      const auto params = dp.full_parameters();
      double err = params.size() == ref.size() ? 0.0 : INFINITY;
      double unused_change = 0;
      for (size_t i = 0; i < params.size() && i < ref.size(); ++i) {
        if (params[i].first != ref[i].first) err = INFINITY;
        err = worse(err, error_of(params[i].second, ref[i].second));
        if (in_unused_layer(params[i].first)) {
          unused_change = worse(unused_change, error_of(params[i].second, initial[i].second));
        }
      }
      report(tag + "_param_error", err, kParamTol);
      // Used on no rank: not updated at all (no weight decay), bit for bit.
      report(tag + "_unused_layer_change", unused_change, 0);
    }
  }
}

// ---- limit: a model whose full state does not fit one rank -----------------------------

// 8 layers of width 128: ~1.6M parameters, ~26 MB of f32 model state
// (parameters, gradients, two AdamW moments). Each rank's CPU allocator is
// capped at three quarters of that above what it held before: the whole
// model with its optimizer is refused, and the same model built deferred
// trains at ZeRO-3 (a quarter of the state per rank at world size 4, plus the
// pooled unit buffers: gathered units and the unit gradients whose
// reduce-scatter is still in flight, about half the state again here).
void run_memory_limit(const std::shared_ptr<comm::Communicator>& comm) {
  nn::GPTConfig c = tiny_config();
  c.n_layer = 8;
  c.n_head = 4;
  c.n_embd = 128;
  const Device cpu = Device::cpu();
  int64_t num_params = 0;
  {
    nn::DeferredInit deferred;
    num_params = nn::GPT(c, cpu, kSeed).num_parameters();
  }
  const int64_t full_state = 16 * num_params;
  const int64_t limit = memory_stats(cpu).current_bytes + full_state / 4 * 3;
  if (g_rank == 0) {
    std::printf("limit: %lld parameters, full f32 state %lld bytes, limit %lld bytes per rank\n",
                static_cast<long long>(num_params), static_cast<long long>(full_state), static_cast<long long>(limit));
  }
  set_memory_limit(cpu, limit);
  const auto batch = batch_rows(0, 2 * comm->rank(), 2);
  bool refused = false;
  try {
    nn::GPT whole(c, cpu, kSeed);
    optim::AdamW opt(optim::param_groups(whole, kWeightDecay));
    whole.forward(batch.first, batch.second);
    whole.backward();
    opt.step(kLr);
  } catch (const Error& e) {
    refused =
        std::string(e.what()).find("CPU memory limit of " + std::to_string(limit) + " bytes") != std::string::npos;
  }
  report("limit_whole_model_refused_negated", refused ? -1.0 : 0.0, -1.0);
  reset_peak_memory(cpu);  // the refused attempt went up to the limit

  std::optional<nn::DeferredInit> deferred(std::in_place);
  nn::GPT model(c, cpu, kSeed);
  deferred.reset();
  parallel::DataParallelOptions o;
  o.stage = 3;
  parallel::DataParallel dp(model, comm, o);
  optim::AdamW opt(dp.param_groups(kWeightDecay));
  std::vector<double> losses;
  for (int s = 0; s < 4; ++s) {
    losses.push_back(dp.average(model.forward(batch.first, batch.second)));
    model.backward();
    dp.step(opt, kLr, kClip);
  }
  set_memory_limit(cpu, 0);
  if (g_rank == 0)
    std::printf("limit: deferred ZeRO-3 losses %.4f -> %.4f, peak %lld bytes\n", losses.front(), losses.back(),
                static_cast<long long>(memory_stats(cpu).peak_bytes));
  const bool finite = std::all_of(losses.begin(), losses.end(), [](double l) { return std::isfinite(l); });
  report("limit_deferred_stage3_loss_not_finite", finite ? 0.0 : 1.0, 0.0);
  report("limit_deferred_stage3_loss_change", losses.back() - losses.front(), 0.0);
  report("limit_deferred_stage3_peak_minus_limit_bytes", static_cast<double>(memory_stats(cpu).peak_bytes - limit),
         0.0);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string mode = argc > 1 ? argv[1] : "train";
    std::vector<int> accums = {1};
    std::vector<int> stages = {0, 1, 2, 3};
    auto digits = [](const char* s) {
      std::vector<int> out;
      for (; *s; ++s) {
        if (*s >= '0' && *s <= '9') out.push_back(*s - '0');
      }
      return out;
    };
    for (int i = 2; i + 1 < argc; i += 2) {
      const std::string k = argv[i];
      if (k == "--accum") accums = digits(argv[i + 1]);
      if (k == "--stages") stages = digits(argv[i + 1]);
    }
    auto comm = comm::init_process_group();
    g_rank = comm->rank();
    if (mode == "mismatch") return run_mismatch(comm);
    if (mode == "limit") {
      run_memory_limit(comm);
      std::fflush(stdout);
      comm::destroy_process_group();
      return 0;
    }
    if (mode == "edges") {
      run_edges(comm);
      std::fflush(stdout);
      comm::destroy_process_group();
      return 0;
    }
    const Run ref = train_reference();
    if (g_rank == 0) {
      std::printf("reference losses:");
      for (float l : ref.losses) std::printf(" %.5f", l);
      std::printf("\nreference grad norms:");
      for (float n : ref.norms) std::printf(" %.4f", n);
      std::printf("\n");
    }
    for (int accum : accums) {
      for (int stage : stages) run_stage(comm, ref, stage, accum);
    }
    if (comm->size() == 2) {  // overlap off, deeper and no prefetch, activation checkpointing
      run_stage(comm, ref, 0, 1, Variant{false, 1, false});
      run_stage(comm, ref, 3, 1, Variant{false, 0, false});
      run_stage(comm, ref, 3, 1, Variant{true, 2, true});
      run_stage(comm, ref, 2, 2, Variant{true, 1, true});
      run_stage(comm, ref, 3, 1, Variant{true, 1, false, false, true});  // layernorm recompute
      run_stage(comm, ref, 3, 1, Variant{true, 1, true, false, true});   // ... with checkpointing
    }
    if (comm->size() == 2 || comm->size() == 4) {  // deferred models: in-place init, ZeRO-3 start-up peak
      run_stage(comm, ref, 3, 1, Variant{true, 1, false, true});
      run_stage(comm, ref, 0, 1, Variant{true, 1, false, true});
      run_deferred_bf16(comm);
    }
    std::fflush(stdout);
    comm::destroy_process_group();
    return 0;
  } catch (const std::exception& e) {
    std::printf("dp_worker rank %d: error: %s\n", g_rank, e.what());
    std::fflush(stdout);
    return 2;
  }
}
