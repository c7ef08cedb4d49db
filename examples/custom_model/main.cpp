// custom_model: a user-defined model trained with dtrain from C++.
//
// The model is a small classifier for points on two interleaved spirals:
//   x [N, 2] -> Linear(2, H) -> GELU -> ResidualMLP(H) -> Linear(H, 2) -> logits
// It shows the three things a custom model needs:
//   1. subclass nn::Module, register parameters (add_parameter) and child
//      modules (add_module) so that named_parameters(), the optimizer and the
//      data-parallel hooks see them;
//   2. write forward (keep what backward needs) and backward (ADD into the
//      input gradient and the parameter gradients, call grad_ready);
//   3. train with any optimizer over optim::param_groups(model, ...).
#include <cmath>
#include <cstdio>
#include <random>

#include "dtrain/nn/init.h"
#include "dtrain/nn/layers.h"
#include "dtrain/ops.h"
#include "dtrain/optim/adamw.h"
#include "dtrain/optim/clip.h"
#include "dtrain/optim/schedule.h"

using namespace dtrain;

// x + gain * proj(gelu(fc(x))): a block with a parameter of its own (gain).
class ResidualMLP : public nn::Module {
 public:
  explicit ResidualMLP(int64_t width)
      : Module("ResidualMLP"),
        fc(width, 2 * width),
        proj(2 * width, width),
        gain(add_parameter("gain", Tensor::full({1}, 0.5), false)) {
    add_module("fc", fc);
    add_module("proj", proj);
  }

  const Tensor& forward(const Tensor& x) {
    run_hooks(nn::HookPoint::pre_forward);
    ensure(h_, nn::with_last_dim(x.shape(), fc.out_features()));
    ops::gelu(h_, fc.forward(x));
    const Tensor& p = proj.forward(h_);
    ensure(out_, x.shape());
    // out = x + gain * p; the gain is read on the host (it is one number).
    ops::scale(out_, p, gain_value());
    ops::add(out_, out_, x);
    run_hooks(nn::HookPoint::post_forward);
    return out_;
  }

  // dx += dout + proj/fc backward of (gain * dout); dgain += sum(dout * p).
  void backward(const Tensor& dout, Tensor& dx) {
    run_hooks(nn::HookPoint::pre_backward);
    const auto d = dout.to_vector(), p = proj.output().to_vector();
    double dgain = 0;
    for (size_t i = 0; i < d.size(); ++i) dgain += static_cast<double>(d[i]) * p[i];
    gain.grad.set_item(0, gain.grad.item(0) + dgain);
    grad_ready(gain);
    ensure(dp_, dout.shape());
    ops::scale(dp_, dout, gain_value());
    ensure_zeroed(dh_, h_.shape());
    proj.backward(dp_, dh_);
    ensure_zeroed(dfc_, h_.shape());
    ops::gelu_backward(dfc_, dh_, fc.output());
    fc.backward(dfc_, dx);
    ops::add_(dx, dout);  // the residual path
    run_hooks(nn::HookPoint::post_backward);
  }

  nn::Linear fc, proj;
  nn::Parameter& gain;

 private:
  float gain_value() const { return static_cast<float>(gain.value.item(0)); }
  Tensor h_, out_, dp_, dh_, dfc_;
};

class SpiralClassifier : public nn::Module {
 public:
  explicit SpiralClassifier(int64_t width) : Module("SpiralClassifier"), in(2, width), body(width), out(width, 2) {
    add_module("in", in);
    add_module("body", body);
    add_module("out", out);
    for (auto& np : named_parameters()) {
      if (np.param->shape().size() == 2) nn::init_normal(np.param->value, 0.0f, 0.5f, 7, nn::stream_id(np.name));
    }
  }

  // x [N, 2] -> logits [N, 2]
  const Tensor& forward(const Tensor& x) {
    ensure(h_, {x.size(0), in.out_features()});
    ops::gelu(h_, in.forward(x));
    return out.forward(body.forward(h_));
  }

  void backward(const Tensor& dlogits) {
    ensure_zeroed(dbody_, h_.shape());
    out.backward(dlogits, dbody_);
    ensure_zeroed(dh_, h_.shape());
    body.backward(dbody_, dh_);
    ensure_zeroed(din_, h_.shape());
    ops::gelu_backward(din_, dh_, in.output());
    Tensor no_input_grad;
    in.backward(din_, no_input_grad);
  }

  nn::Linear in;
  ResidualMLP body;
  nn::Linear out;

 private:
  Tensor h_, dbody_, dh_, din_;
};

// Two spirals, labels 0/1, with a little noise.
void make_spirals(Tensor& x, Tensor& y, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::normal_distribution<float> noise(0.0f, 0.05f);
  for (int64_t i = 0; i < x.size(0); ++i) {
    const int label = static_cast<int>(i % 2);
    const float r = u(rng);
    const float angle = 3.0f * 3.14159f * r + 3.14159f * static_cast<float>(label);
    x.set_item(2 * i, r * std::cos(angle) + noise(rng));
    x.set_item(2 * i + 1, r * std::sin(angle) + noise(rng));
    y.data<int32_t>()[i] = label;
  }
}

double accuracy(SpiralClassifier& model, const Tensor& x, const Tensor& y) {
  const auto logits = model.forward(x).to_vector();
  int64_t right = 0;
  for (int64_t i = 0; i < x.size(0); ++i) right += (logits[2 * i + 1] > logits[2 * i]) == (y.data<int32_t>()[i] == 1);
  return static_cast<double>(right) / static_cast<double>(x.size(0));
}

int main() {
  try {
    const int64_t n = 512, steps = 600;
    Tensor x = Tensor::empty({n, 2}), y = Tensor::empty({n}, DType::i32);
    Tensor test_x = Tensor::empty({n, 2}), test_y = Tensor::empty({n}, DType::i32);
    make_spirals(x, y, 1);
    make_spirals(test_x, test_y, 2);

    SpiralClassifier model(32);
    std::printf("model parameters:\n");
    for (auto& np : model.named_parameters()) {
      std::printf("  %-16s %s\n", np.name.c_str(), shape_str(np.param->shape()).c_str());
    }
    int grads_ready = 0;  // what a data-parallel engine would hang its all-reduce on
    model.add_grad_ready_hook([&](nn::Parameter&) { ++grads_ready; });

    optim::AdamW opt(optim::param_groups(model, 1e-4f));
    const optim::CosineSchedule schedule{2e-2f, 1e-3f, 20, steps};
    Tensor losses = Tensor::empty({n}), dlogits = Tensor::empty({n, 2});
    for (int64_t step = 0; step < steps; ++step) {
      model.zero_grad();
      const Tensor& logits = model.forward(x);
      ops::softmax_cross_entropy(losses, dlogits, logits, y, 1.0f / static_cast<float>(n));
      model.backward(dlogits);
      opt.step(schedule.lr(step), optim::clip_scale(optim::grad_norm(opt.grads()), 1.0f));
      if (step % 100 == 0 || step + 1 == steps) {
        double loss = 0;
        for (float l : losses.to_vector()) loss += l;
        std::printf("step %4lld | loss %.4f | train accuracy %.3f\n", static_cast<long long>(step),
                    loss / static_cast<double>(n), accuracy(model, x, y));
      }
    }
    const double test_acc = accuracy(model, test_x, test_y);
    std::printf("held-out accuracy %.3f (chance 0.5); %d gradients reported ready per step\n", test_acc,
                grads_ready / static_cast<int>(steps));
    return test_acc > 0.8 ? 0 : 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "custom_model: error: %s\n", e.what());
    return 1;
  }
}
