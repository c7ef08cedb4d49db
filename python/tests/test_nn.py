"""dtrain.nn: the GPT model, the module tree, layers, hooks, generation, and
modules written in Python from dtrain's layers and ops (checked against
NumPy, forward and backward)."""
import math

import numpy as np
import pytest

import dtrain
from conftest import assert_close


@pytest.fixture(scope="module")
def tiny():
    return dtrain.nn.gpt("tiny", n_layer=1, seed=3)


def batch(rng, b=2, t=8, v=256):
    x = rng.integers(0, v, size=(b, t)).astype(np.int32)
    return x, np.roll(x, -1, axis=1)


def test_gpt_forward_backward(tiny, rng):
    x, y = batch(rng)
    logits = tiny(x)
    assert logits.shape == (2, 8, 256) and logits.dtype == dtrain.f32
    tiny.zero_grad()
    loss = tiny(x, y)
    assert abs(loss - math.log(256)) < 0.5  # near-uniform predictions at initialisation
    tiny.backward()
    grads = [p.grad.numpy() for _, p in tiny.named_parameters()]
    assert all(np.isfinite(g).all() for g in grads) and any(np.abs(g).sum() > 0 for g in grads)
    assert tiny.forward(x, y, grad_scale=0.5, ignore_index=-100) == pytest.approx(loss, rel=1e-6)


def test_named_parameters_and_repr(tiny):
    names = [name for name, _ in tiny.named_parameters()]
    assert names[0] == "embed.wte" and "blocks.0.attn.qkv.weight" in names and len(set(names)) == len(names)
    total = sum(p.numel for _, p in tiny.named_parameters())
    assert total == tiny.num_parameters
    p = tiny.parameter("blocks.0.mlp.fc.weight")
    assert p.shape == (512, 128) and p.weight_decay and "shape=(512, 128)" in repr(p) and "f32" in repr(p)
    assert "GPT(" in repr(tiny) and "(blocks): ModuleList(" in repr(tiny) and "on cpu" in repr(tiny)
    assert [n for n, _ in tiny.named_modules()][:2] == ["", "embed"]
    assert tiny.blocks[0].attn.num_heads == 4 and tiny.config.n_embd == 128
    assert "tiny" in dtrain.nn.GPTConfig.preset_names()


def test_parameter_value_is_shared(tiny):
    p = tiny.parameter("ln_f.weight")
    view = p.value.numpy()
    view[0] = 2.0
    assert p.value.numpy()[0] == 2.0
    p.value = np.ones(128, np.float32)  # assignment copies the values in
    assert view[0] == 1.0
    with pytest.raises(dtrain.DtrainValueError, match="wrong shape"):
        p.value = np.ones(3, np.float32)


def test_gpt_errors():
    with pytest.raises(dtrain.DtrainValueError, match="unknown GPT preset"):
        dtrain.nn.gpt("huge")
    with pytest.raises(dtrain.DtrainValueError, match="no field"):
        dtrain.nn.gpt("tiny", n_layers=3)
    with pytest.raises(dtrain.DtrainError):
        dtrain.nn.gpt("tiny", n_head=5)
    model = dtrain.nn.gpt("tiny", n_layer=1)
    with pytest.raises(dtrain.DtrainError, match="i32|int32"):
        model(np.zeros((1, 4), np.int64))
    with pytest.raises(dtrain.DtrainError):
        model(np.zeros((1, 4), np.int32), np.zeros((1, 5), np.int32))


def test_hooks_fire(tiny, rng):
    seen, ready = [], []
    hid = tiny.add_hook(dtrain.nn.HookPoint.post_backward, lambda m: seen.append(m.type_name))
    gid = tiny.add_grad_ready_hook(lambda p: ready.append(p.name))
    x, y = batch(rng)
    tiny(x, y)
    tiny.backward()
    tiny.remove_hook(hid)
    tiny.remove_hook(gid)
    assert seen == ["GPT"] and len(ready) == len(tiny.named_parameters())


def test_generate(tiny):
    out = dtrain.nn.generate(tiny, [1, 2, 3], max_new_tokens=5)
    assert len(out) == 5 and all(0 <= t < 256 for t in out)
    assert dtrain.nn.generate(tiny, [1, 2, 3], 5) == out  # greedy is deterministic
    batch_out = dtrain.nn.generate_greedy_batch(tiny, [[1, 2, 3], [4]], 3)
    assert len(batch_out) == 2 and batch_out[0] == out[:3]


class TwoLayer(dtrain.nn.Module):
    """A Python-defined module: Linear -> GELU -> Linear, backward by hand."""

    def __init__(self, d, hidden):
        super().__init__()
        self.fc = dtrain.nn.Linear(d, hidden)
        self.proj = dtrain.nn.Linear(hidden, d)
        self.gain = self.add_parameter("gain", np.full(d, 2.0, np.float32))

    def forward(self, x):
        self.run_hooks(dtrain.nn.HookPoint.pre_forward)
        self.h = self.fc(x)
        self.a = dtrain.empty(self.h.shape)
        dtrain.ops.gelu(self.a, self.h)
        self.y = self.proj(self.a)
        out = dtrain.empty(self.y.shape)
        out.numpy()[...] = self.y.numpy() * self.gain.value.numpy()
        self.run_hooks(dtrain.nn.HookPoint.post_forward)
        return out

    def backward(self, dout, dx=None):
        self.run_hooks(dtrain.nn.HookPoint.pre_backward)
        dout = np.asarray(dout)
        self.gain.grad.numpy()[...] += (dout * self.y.numpy()).reshape(-1, dout.shape[-1]).sum(0)
        self.grad_ready(self.gain)
        dy = dout * self.gain.value.numpy()
        da = dtrain.zeros(self.a.shape)
        self.proj.backward(dy, da)
        dh = dtrain.zeros(self.h.shape)
        dtrain.ops.gelu_backward(dh, da, self.h)
        self.fc.backward(dh, dx)
        self.run_hooks(dtrain.nn.HookPoint.post_backward)


def test_python_module_matches_numpy(rng):
    d, hidden, n = int(rng.integers(2, 9)), int(rng.integers(2, 17)), int(rng.integers(1, 6))
    m = TwoLayer(d, hidden)
    for name, p in m.named_parameters():
        if name.endswith("weight"):
            dtrain.nn.init_normal(p.value, std=0.5, seed=11, stream=name)
    assert [name for name, _ in m.named_parameters()] == [
        "gain", "fc.weight", "fc.bias", "proj.weight", "proj.bias"]
    assert "TwoLayer(" in repr(m) and "(fc): Linear(" in repr(m)
    ready = []
    m.add_grad_ready_hook(lambda p: ready.append(p.name))
    x = rng.standard_normal((n, d)).astype(np.float32)
    out = m(x)
    w1, b1 = m.fc.weight.value.numpy(), m.fc.bias.value.numpy()
    w2, b2 = m.proj.weight.value.numpy(), m.proj.bias.value.numpy()
    h = x @ w1.T + b1
    k = math.sqrt(2 / math.pi)
    t = np.tanh(k * (h + 0.044715 * h ** 3))
    a = 0.5 * h * (1 + t)
    y = a @ w2.T + b2
    assert_close(out, 2.0 * y, rtol=1e-4, atol=1e-5, what="forward")

    m.zero_grad()
    dout = rng.standard_normal((n, d)).astype(np.float32)
    dx = np.zeros_like(x)
    m.backward(dout, dx)
    dy = 2.0 * dout
    da = dy @ w2
    dh = da * (0.5 * (1 + t) + 0.5 * h * (1 - t ** 2) * k * (1 + 3 * 0.044715 * h ** 2))
    assert_close(m.proj.weight.grad, dy.T @ a, rtol=1e-4, atol=1e-5, what="proj.weight grad")
    assert_close(m.fc.weight.grad, dh.T @ x, rtol=1e-4, atol=1e-5, what="fc.weight grad")
    assert_close(m.fc.bias.grad, dh.sum(0), rtol=1e-4, atol=1e-5, what="fc.bias grad")
    assert_close(m.gain.grad, (dout * y).sum(0), rtol=1e-4, atol=1e-5, what="gain grad")
    assert_close(dx, dh @ w1, rtol=1e-4, atol=1e-5, what="input grad")
    assert sorted(ready) == ["bias", "bias", "gain", "weight", "weight"]


def test_module_without_forward_says_so():
    class Empty(dtrain.nn.Module):
        pass

    with pytest.raises(NotImplementedError, match="Empty.forward"):
        Empty()(np.zeros(1, np.float32))


def test_builtin_layers(rng):
    ln = dtrain.nn.LayerNorm(6)
    x = rng.standard_normal((3, 6)).astype(np.float32)
    y = ln.forward(x).numpy()
    assert_close(y.mean(-1), np.zeros(3), atol=1e-5, what="layernorm mean")
    dx = np.zeros_like(x)
    ln.backward(np.ones_like(x), dx)
    assert_close(ln.bias.grad, np.full(6, 3.0), what="layernorm bias grad")
    emb = dtrain.nn.Embedding(10, 4, 3)
    assert emb.forward(np.zeros((1, 4), np.int32)).shape == (1, 4, 3)
    emb.backward(np.ones((1, 4, 3), np.float32))
    blk = dtrain.nn.Block(8, 2)
    out = blk.forward(rng.standard_normal((1, 3, 8)).astype(np.float32))
    assert out.shape == (1, 3, 8)
    blk.backward(np.ones((1, 3, 8), np.float32), None)
    assert blk.checkpointing is False
    with pytest.raises(dtrain.DtrainError):
        dtrain.nn.Linear(3, 4).forward(np.zeros((2, 5), np.float32))


class Regressor(dtrain.nn.Module):
    """A Python-defined model for the engine: TwoLayer plus a squared-error loss,
    with the module's hooks run at the points the engine uses."""

    def __init__(self):
        super().__init__()
        self.body = TwoLayer(4, 8)

    def forward(self, x, target, grad_scale=1.0):
        self.run_hooks(dtrain.nn.HookPoint.pre_forward)
        out = self.body(x).numpy()
        self.dout = dtrain.tensor(grad_scale * 2 * (out - target) / out.size)
        self.run_hooks(dtrain.nn.HookPoint.post_forward)
        return float(((out - target) ** 2).mean())

    def backward(self):
        self.run_hooks(dtrain.nn.HookPoint.pre_backward)
        self.body.backward(self.dout)
        self.run_hooks(dtrain.nn.HookPoint.post_backward)


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_python_module_trains_under_the_engine(stage, rng, tmp_path):
    model = Regressor()
    for name, p in model.named_parameters():
        if name.endswith("weight"):
            dtrain.nn.init_normal(p.value, std=0.3, seed=5, stream=name)
    comm = dtrain.Communicator(dtrain.FileStore(str(tmp_path / "s")), 0, 1, timeout=20)
    engine = dtrain.parallel.DataParallel(model, comm, stage=stage)
    opt = dtrain.optim.AdamW(engine.param_groups(0.0))
    x = rng.standard_normal((16, 4)).astype(np.float32)
    target = np.tanh(x[:, ::-1]).copy()
    losses = []
    for _ in range(30):
        losses.append(model(x, target, engine.grad_scale))
        model.backward()
        engine.step(opt, 1e-2)
    assert losses[-1] < 0.5 * losses[0], losses
