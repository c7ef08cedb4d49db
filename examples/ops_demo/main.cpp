// ops_demo: trains a tiny 2-layer MLP classifier with the CPU op set only
// (linear, gelu, softmax_cross_entropy, their backwards, global_norm,
// adamw_step) on synthetic data, printing the loss as it falls.
//
// The data: x ~ U(-1, 1)^D, label = argmax of a fixed random linear "teacher".
// The model: logits = W2 gelu(W1 x + b1) + b2. It runs in about a second.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "dtrain/ops.h"
#include "dtrain/tensor.h"

using dtrain::DType;
using dtrain::Tensor;
namespace ops = dtrain::ops;

namespace {

Tensor uniform(const dtrain::Shape& shape, std::mt19937& rng, float scale) {
  Tensor t = Tensor::empty(shape);
  std::uniform_real_distribution<float> dist(-scale, scale);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = dist(rng);
  return t;
}

struct Param {
  const char* name;
  Tensor value, grad, m, v;
  float weight_decay;
};

Param make_param(const char* name, const Tensor& value, float weight_decay) {
  const dtrain::Shape& s = value.shape();
  return {name, value, Tensor::zeros(s), Tensor::zeros(s), Tensor::zeros(s), weight_decay};
}

}  // namespace

// Only option setup runs outside the try below; what it can throw (bad_alloc) may end the program.
int main(int argc, char** argv) {  // NOLINT(bugprone-exception-escape)
  CLI::App app{"Fits a tiny MLP with dtrain's CPU ops and prints the loss falling"};
  int steps = 50, batch = 256, dim = 32, hidden = 128, classes = 10;
  float lr = 3e-3f;
  unsigned seed = 1234;
  std::string metrics_out;
  app.add_option("--steps", steps, "training steps")->check(CLI::PositiveNumber);
  app.add_option("--batch", batch, "samples per step")->check(CLI::PositiveNumber);
  app.add_option("--hidden", hidden, "hidden width")->check(CLI::PositiveNumber);
  app.add_option("--lr", lr, "AdamW learning rate");
  app.add_option("--seed", seed, "random seed");
  app.add_option("--metrics-out", metrics_out, "write one JSON object per step (JSON Lines) to this file");
  CLI11_PARSE(app, argc, argv);

  try {
    std::mt19937 rng(seed);
    const Tensor teacher = uniform({classes, dim}, rng, 1.0f);
    std::vector<Param> params;
    params.push_back(make_param("w1", uniform({hidden, dim}, rng, 1.0f / std::sqrt(float(dim))), 0.01f));
    params.push_back(make_param("b1", Tensor::zeros({hidden}), 0.0f));
    params.push_back(make_param("w2", uniform({classes, hidden}, rng, 1.0f / std::sqrt(float(hidden))), 0.01f));
    params.push_back(make_param("b2", Tensor::zeros({classes}), 0.0f));
    Param &w1 = params[0], &b1 = params[1], &w2 = params[2], &b2 = params[3];

    // Activations and their gradients, allocated once.
    Tensor x = Tensor::empty({batch, dim}), teacher_logits = Tensor::empty({batch, classes});
    Tensor targets = Tensor::empty({batch}, DType::i32);
    Tensor h = Tensor::empty({batch, hidden}), a = Tensor::empty({batch, hidden});
    Tensor logits = Tensor::empty({batch, classes}), losses = Tensor::empty({batch});
    Tensor dlogits = Tensor::empty({batch, classes}), da = Tensor::empty({batch, hidden});
    Tensor dh = Tensor::empty({batch, hidden}), none;

    std::ofstream metrics;
    if (!metrics_out.empty()) {
      metrics.open(metrics_out);
      if (!metrics) throw dtrain::Error("cannot open --metrics-out file " + metrics_out + " for writing");
    }
    std::printf("ops_demo: MLP %d -> %d -> %d, batch %d, %d steps, AdamW lr %g\n", dim, hidden, classes, batch, steps,
                lr);
    double first_loss = 0.0, last_loss = 0.0, total_ms = 0.0;
    for (int step = 1; step <= steps; ++step) {
      const auto t0 = std::chrono::steady_clock::now();
      // A fresh synthetic batch labelled by the teacher.
      x.copy_(uniform({batch, dim}, rng, 1.0f));
      ops::linear(teacher_logits, x, teacher, none);
      for (int r = 0; r < batch; ++r) {
        const float* row = teacher_logits.data<float>() + r * classes;
        int best = 0;
        for (int c = 1; c < classes; ++c) best = row[c] > row[best] ? c : best;
        targets.data<int32_t>()[r] = best;
      }
      // Forward.
      ops::linear(h, x, w1.value, b1.value);
      ops::gelu(a, h);
      ops::linear(logits, a, w2.value, b2.value);
      // Mean loss over the batch: grad_scale 1/batch makes dlogits the gradient of the mean.
      ops::softmax_cross_entropy(losses, dlogits, logits, targets, 1.0f / batch);
      double loss = 0.0;
      for (int r = 0; r < batch; ++r) loss += losses.data<float>()[r];
      loss /= batch;
      // Backward (gradients accumulate, so zero them first).
      for (Param& p : params) p.grad.zero_();
      da.zero_();
      dh.zero_();
      ops::linear_backward(da, w2.grad, b2.grad, dlogits, a, w2.value);
      ops::gelu_backward(dh, da, h);
      ops::linear_backward(none, w1.grad, b1.grad, dh, x, w1.value);
      const float grad_norm = ops::global_norm({w1.grad, b1.grad, w2.grad, b2.grad});
      // Clip to norm 1 through grad_scale, then step.
      ops::AdamWConfig cfg;
      cfg.lr = lr;
      cfg.step = step;
      cfg.grad_scale = grad_norm > 1.0f ? 1.0f / grad_norm : 1.0f;
      std::vector<ops::AdamWTensor> state;
      state.reserve(params.size());
      for (Param& p : params) state.push_back({p.value, p.grad, p.m, p.v, Tensor(), p.weight_decay});
      ops::adamw_step(state, cfg);
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      total_ms += ms;
      if (step == 1) first_loss = loss;
      last_loss = loss;
      if (step == 1 || step % 5 == 0 || step == steps) {
        std::printf("step %3d  loss %.4f  grad_norm %.3f  %.2f ms\n", step, loss, grad_norm, ms);
      }
      if (metrics) {
        metrics << nlohmann::json{{"step", step},
                                  {"loss", loss},
                                  {"grad_norm", grad_norm},
                                  {"step_ms", ms},
                                  {"samples_per_s", batch / (ms / 1e3)}}
                       .dump()
                << "\n";
      }
    }
    std::printf("loss %.4f -> %.4f over %d steps (%.1f ms)\n", first_loss, last_loss, steps, total_ms);
    if (metrics) {
      metrics << nlohmann::json{{"final", true},
                                {"steps", steps},
                                {"first_loss", first_loss},
                                {"loss", last_loss},
                                {"total_ms", total_ms}}
                     .dump()
              << "\n";
    }
    if (!(last_loss < first_loss)) {
      std::fprintf(stderr, "ops_demo: the loss did not fall (%.4f -> %.4f)\n", first_loss, last_loss);
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ops_demo: %s\n", e.what());
    return 1;
  }
}
