// dtrain.ops: the op set (include/dtrain/ops.h) for Python, one function per
// op, forward and backward, with the C++ conventions unchanged: outputs are
// passed in already allocated (NumPy arrays work, written in place), and
// backward ops ADD into the gradients they are given. Every argument is an
// array (dtrain.Tensor, NumPy, or DLPack-capable); the GIL is released while
// an op runs.
#include <pybind11/stl.h>

#include "bindings.h"
#include "dtrain/ops.h"

namespace dtrain::python {
namespace {

// Short names for the conversions: in = read, out = written, opt = may be None.
Tensor in(py::handle o, const char* name) {
  return as_tensor(o, name, false);
}
Tensor out(py::handle o, const char* name) {
  return as_tensor(o, name, true);
}
Tensor opt_out(py::handle o, const char* name) {
  return as_optional_tensor(o, name, true);
}

}  // namespace

void bind_ops(py::module_& parent) {
  py::module_ m = parent.def_submodule("ops", "The op set: forward and backward, outputs preallocated.");
  using py::arg;

  m.def(
      "matmul",
      [](py::handle o, py::handle a, py::handle b, bool ta, bool tb, float alpha, float beta) {
        Tensor to = out(o, "out"), t_a = in(a, "a"), t_b = in(b, "b");
        py::gil_scoped_release r;
        ops::matmul(to, t_a, t_b, ta, tb, alpha, beta);
      },
      arg("out"), arg("a"), arg("b"), arg("trans_a") = false, arg("trans_b") = false, arg("alpha") = 1.0f,
      arg("beta") = 0.0f, "out = alpha * op(a) @ op(b) + beta * out (2-D, or 3-D batched).");
  m.def(
      "matmul_backward",
      [](py::handle da, py::handle db, py::handle dout, py::handle a, py::handle b, bool ta, bool tb) {
        Tensor t_da = opt_out(da, "da"), t_db = opt_out(db, "db"), t_dout = in(dout, "dout"), t_a = in(a, "a"),
               t_b = in(b, "b");
        py::gil_scoped_release r;
        ops::matmul_backward(t_da, t_db, t_dout, t_a, t_b, ta, tb);
      },
      arg("da"), arg("db"), arg("dout"), arg("a"), arg("b"), arg("trans_a") = false, arg("trans_b") = false,
      "da += d/da, db += d/db of out = op(a) @ op(b); da or db may be None.");
  m.def(
      "linear",
      [](py::handle o, py::handle x, py::handle w, py::handle b) {
        Tensor to = out(o, "out"), tx = in(x, "x"), tw = in(w, "weight"), tb = as_optional_tensor(b, "bias");
        py::gil_scoped_release r;
        ops::linear(to, tx, tw, tb);
      },
      arg("out"), arg("x"), arg("weight"), arg("bias") = py::none(), "out = x @ weight^T + bias.");
  m.def(
      "linear_backward",
      [](py::handle dx, py::handle dw, py::handle db, py::handle dout, py::handle x, py::handle w) {
        Tensor tdx = opt_out(dx, "dx"), tdw = opt_out(dw, "dweight"), tdb = opt_out(db, "dbias"),
               tdo = in(dout, "dout"), tx = in(x, "x"), tw = in(w, "weight");
        py::gil_scoped_release r;
        ops::linear_backward(tdx, tdw, tdb, tdo, tx, tw);
      },
      arg("dx"), arg("dweight"), arg("dbias"), arg("dout"), arg("x"), arg("weight"),
      "dx += dout @ weight; dweight += dout^T @ x; dbias += column sums of dout (None: skipped).");
  m.def(
      "layernorm",
      [](py::handle o, py::handle mean, py::handle rstd, py::handle x, py::handle w, py::handle b, float eps) {
        Tensor to = out(o, "out"), tm = out(mean, "mean"), tr = out(rstd, "rstd"), tx = in(x, "x"),
               tw = in(w, "weight"), tb = in(b, "bias");
        py::gil_scoped_release r;
        ops::layernorm(to, tm, tr, tx, tw, tb, eps);
      },
      arg("out"), arg("mean"), arg("rstd"), arg("x"), arg("weight"), arg("bias"), arg("eps") = 1e-5f,
      "LayerNorm over the last dimension; mean and rstd ([rows], f32) are saved for backward.");
  m.def(
      "layernorm_backward",
      [](py::handle dx, py::handle dw, py::handle db, py::handle dout, py::handle x, py::handle w, py::handle mean,
         py::handle rstd) {
        Tensor tdx = opt_out(dx, "dx"), tdw = opt_out(dw, "dweight"), tdb = opt_out(db, "dbias"),
               tdo = in(dout, "dout"), tx = in(x, "x"), tw = in(w, "weight"), tm = in(mean, "mean"),
               tr = in(rstd, "rstd");
        py::gil_scoped_release r;
        ops::layernorm_backward(tdx, tdw, tdb, tdo, tx, tw, tm, tr);
      },
      arg("dx"), arg("dweight"), arg("dbias"), arg("dout"), arg("x"), arg("weight"), arg("mean"), arg("rstd"));
  m.def(
      "gelu",
      [](py::handle o, py::handle x) {
        Tensor to = out(o, "out"), tx = in(x, "x");
        py::gil_scoped_release r;
        ops::gelu(to, tx);
      },
      arg("out"), arg("x"), "GELU, tanh approximation.");
  m.def(
      "gelu_backward",
      [](py::handle dx, py::handle dout, py::handle x) {
        Tensor tdx = out(dx, "dx"), tdo = in(dout, "dout"), tx = in(x, "x");
        py::gil_scoped_release r;
        ops::gelu_backward(tdx, tdo, tx);
      },
      arg("dx"), arg("dout"), arg("x"), "dx += gelu'(x) * dout.");
  m.def(
      "attention",
      [](py::handle o, py::handle lse, py::handle qkv, int64_t heads) {
        Tensor to = out(o, "out"), tl = out(lse, "lse"), tq = in(qkv, "qkv");
        py::gil_scoped_release r;
        ops::attention(to, tl, tq, heads);
      },
      arg("out"), arg("lse"), arg("qkv"), arg("num_heads"),
      "Causal multi-head attention: qkv [B, T, 3C] -> out [B, T, C], lse [B, NH, T].");
  m.def(
      "attention_backward",
      [](py::handle dqkv, py::handle dout, py::handle qkv, py::handle o, py::handle lse, int64_t heads) {
        Tensor td = out(dqkv, "dqkv"), tdo = in(dout, "dout"), tq = in(qkv, "qkv"), to = in(o, "out"),
               tl = in(lse, "lse");
        py::gil_scoped_release r;
        ops::attention_backward(td, tdo, tq, to, tl, heads);
      },
      arg("dqkv"), arg("dout"), arg("qkv"), arg("out"), arg("lse"), arg("num_heads"));
  m.def(
      "softmax_cross_entropy",
      [](py::handle losses, py::handle dlogits, py::handle logits, py::handle targets, float scale, int32_t ignore) {
        Tensor tl = out(losses, "losses"), td = opt_out(dlogits, "dlogits"), tg = in(logits, "logits"),
               tt = in(targets, "targets");
        py::gil_scoped_release r;
        ops::softmax_cross_entropy(tl, td, tg, tt, scale, ignore);
      },
      arg("losses"), arg("dlogits"), arg("logits"), arg("targets"), arg("grad_scale") = 1.0f,
      arg("ignore_index") = -100,
      "losses[N] = -log softmax(logits)[target]; dlogits (None: skipped) is written, not accumulated.");
  m.def(
      "embedding",
      [](py::handle o, py::handle tokens, py::handle wte, py::handle wpe) {
        Tensor to = out(o, "out"), tt = in(tokens, "tokens"), te = in(wte, "wte"), tp = in(wpe, "wpe");
        py::gil_scoped_release r;
        ops::embedding(to, tt, te, tp);
      },
      arg("out"), arg("tokens"), arg("wte"), arg("wpe"), "out[b, t] = wte[tokens[b, t]] + wpe[t].");
  m.def(
      "embedding_backward",
      [](py::handle dwte, py::handle dwpe, py::handle dout, py::handle tokens) {
        Tensor te = opt_out(dwte, "dwte"), tp = opt_out(dwpe, "dwpe"), tdo = in(dout, "dout"),
               tt = in(tokens, "tokens");
        py::gil_scoped_release r;
        ops::embedding_backward(te, tp, tdo, tt);
      },
      arg("dwte"), arg("dwpe"), arg("dout"), arg("tokens"));
  m.def(
      "add",
      [](py::handle o, py::handle a, py::handle b) {
        Tensor to = out(o, "out"), ta = in(a, "a"), tb = in(b, "b");
        py::gil_scoped_release r;
        ops::add(to, ta, tb);
      },
      arg("out"), arg("a"), arg("b"), "out = a + b.");
  m.def(
      "add_",
      [](py::handle y, py::handle x, float alpha) {
        Tensor ty = out(y, "y"), tx = in(x, "x");
        py::gil_scoped_release r;
        ops::add_(ty, tx, alpha);
      },
      arg("y"), arg("x"), arg("alpha") = 1.0f, "y += alpha * x.");
  m.def(
      "scale",
      [](py::handle o, py::handle x, float alpha) {
        Tensor to = out(o, "out"), tx = in(x, "x");
        py::gil_scoped_release r;
        ops::scale(to, tx, alpha);
      },
      arg("out"), arg("x"), arg("alpha"), "out = alpha * x.");
  m.def(
      "cast",
      [](py::handle o, py::handle x) {
        Tensor to = out(o, "out"), tx = in(x, "x");
        py::gil_scoped_release r;
        ops::cast(to, tx);
      },
      arg("out"), arg("x"), "Converts between floating dtypes (f32 <-> bf16, f32 <-> f16).");
  m.def(
      "adamw_step",
      [](const py::list& tensors, float lr, float beta1, float beta2, float eps, int64_t step, float grad_scale) {
        std::vector<ops::AdamWTensor> list;
        for (py::handle item : tensors) {
          py::dict d = py::reinterpret_borrow<py::dict>(item);
          ops::AdamWTensor t;
          t.param = out(d["param"], "param");
          t.grad = in(d["grad"], "grad");
          t.exp_avg = out(d["exp_avg"], "exp_avg");
          t.exp_avg_sq = out(d["exp_avg_sq"], "exp_avg_sq");
          if (d.contains("param_copy")) t.param_copy = opt_out(d["param_copy"], "param_copy");
          if (d.contains("weight_decay")) t.weight_decay = d["weight_decay"].cast<float>();
          list.push_back(std::move(t));
        }
        ops::AdamWConfig c;
        c.lr = lr;
        c.beta1 = beta1;
        c.beta2 = beta2;
        c.eps = eps;
        c.step = step;
        c.grad_scale = grad_scale;
        py::gil_scoped_release r;
        ops::adamw_step(list, c);
      },
      arg("tensors"), arg("lr") = 1e-3f, arg("beta1") = 0.9f, arg("beta2") = 0.999f, arg("eps") = 1e-8f,
      arg("step") = 1, arg("grad_scale") = 1.0f,
      "One AdamW update of each dict {param, grad, exp_avg, exp_avg_sq[, param_copy, weight_decay]}.");
  m.def(
      "global_norm",
      [](const py::list& tensors) {
        std::vector<Tensor> list;
        for (py::handle t : tensors) list.push_back(in(t, "tensors"));
        py::gil_scoped_release r;
        return ops::global_norm(list);
      },
      arg("tensors"), "sqrt of the sum of squares over all tensors.");
}

}  // namespace dtrain::python
