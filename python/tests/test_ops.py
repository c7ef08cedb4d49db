"""The op set against NumPy references written here, forward and backward,
on random shapes (different from the C++ tests' fixed ones). Outputs are
NumPy arrays written in place, which also exercises zero-copy arguments.
Backward ops accumulate, so every gradient starts from a known non-zero
value and the reference adds to it."""
import math

import numpy as np
import pytest

import dtrain
from conftest import assert_close

f32 = np.float32


def randn(rng, *shape):
    return rng.standard_normal(shape).astype(f32)


def test_matmul_forward_backward(rng):
    for trans_a in (False, True):
        for trans_b in (False, True):
            m, k, n = rng.integers(1, 17, size=3)
            a = randn(rng, *((k, m) if trans_a else (m, k)))
            b = randn(rng, *((n, k) if trans_b else (k, n)))
            opa = a.T if trans_a else a
            opb = b.T if trans_b else b
            out = randn(rng, m, n)
            expected = 0.5 * opa @ opb + 2.0 * out
            dtrain.ops.matmul(out, a, b, trans_a, trans_b, alpha=0.5, beta=2.0)
            assert_close(out, expected, rtol=1e-4, atol=1e-4, what="matmul")
            dout = randn(rng, m, n)
            da0, db0 = randn(rng, *a.shape), randn(rng, *b.shape)
            da, db = da0.copy(), db0.copy()
            dtrain.ops.matmul_backward(da, db, dout, a, b, trans_a, trans_b)
            dopa, dopb = dout @ opb.T, opa.T @ dout
            assert_close(da, da0 + (dopa.T if trans_a else dopa), rtol=1e-4, atol=1e-4, what="da")
            assert_close(db, db0 + (dopb.T if trans_b else dopb), rtol=1e-4, atol=1e-4, what="db")


def test_matmul_batched(rng):
    bsz, m, k, n = rng.integers(1, 7, size=4)
    a, b = randn(rng, bsz, m, k), randn(rng, bsz, k, n)
    out = np.zeros((bsz, m, n), f32)
    dtrain.ops.matmul(out, a, b)
    assert_close(out, a @ b, rtol=1e-4, atol=1e-4)


def test_linear_forward_backward(rng):
    rows, t, ic, oc = rng.integers(1, 9, size=4)
    x, w, b = randn(rng, rows, t, ic), randn(rng, oc, ic), randn(rng, oc)
    out = np.zeros((rows, t, oc), f32)
    dtrain.ops.linear(out, x, w, b)
    assert_close(out, x @ w.T + b, rtol=1e-4, atol=1e-5, what="linear")
    out_nb = np.zeros_like(out)
    dtrain.ops.linear(out_nb, x, w)
    assert_close(out_nb, x @ w.T, rtol=1e-4, atol=1e-5, what="linear without bias")
    dout = randn(rng, rows, t, oc)
    dx0, dw0, db0 = randn(rng, *x.shape), randn(rng, *w.shape), randn(rng, oc)
    dx, dw, db = dx0.copy(), dw0.copy(), db0.copy()
    dtrain.ops.linear_backward(dx, dw, db, dout, x, w)
    d2, x2 = dout.reshape(-1, oc), x.reshape(-1, ic)
    assert_close(dx, dx0 + dout @ w, rtol=1e-4, atol=1e-4, what="dx")
    assert_close(dw, dw0 + d2.T @ x2, rtol=1e-4, atol=1e-4, what="dweight")
    assert_close(db, db0 + d2.sum(0), rtol=1e-4, atol=1e-4, what="dbias")
    dw_only = np.zeros_like(w)
    dtrain.ops.linear_backward(None, dw_only, None, dout, x, w)
    assert_close(dw_only, d2.T @ x2, rtol=1e-4, atol=1e-4, what="dweight alone")


def layernorm_ref(x, w, b, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    return (x - mean) * rstd * w + b, mean[..., 0], rstd[..., 0]


def test_layernorm_forward_backward(rng):
    rows, c = rng.integers(1, 13), rng.integers(2, 40)
    x = randn(rng, rows, c) * 3 + 1
    w, b = randn(rng, c), randn(rng, c)
    out, mean, rstd = np.zeros_like(x), np.zeros(rows, f32), np.zeros(rows, f32)
    dtrain.ops.layernorm(out, mean, rstd, x, w, b)
    ref, ref_mean, ref_rstd = layernorm_ref(x.astype(np.float64), w, b)
    assert_close(out, ref, rtol=1e-4, atol=1e-4, what="layernorm")
    assert_close(mean, ref_mean, rtol=1e-5, atol=1e-5, what="mean")
    assert_close(rstd, ref_rstd, rtol=1e-4, atol=1e-5, what="rstd")

    dout = randn(rng, rows, c)
    dx0, dw0, db0 = randn(rng, rows, c), randn(rng, c), randn(rng, c)
    dx, dw, db = dx0.copy(), dw0.copy(), db0.copy()
    dtrain.ops.layernorm_backward(dx, dw, db, dout, x, w, mean, rstd)
    xhat = (x - ref_mean[:, None]) * ref_rstd[:, None]
    dxhat = dout * w
    ref_dx = ref_rstd[:, None] * (dxhat - dxhat.mean(-1, keepdims=True) - xhat * (dxhat * xhat).mean(-1, keepdims=True))
    assert_close(dx, dx0 + ref_dx, rtol=1e-4, atol=1e-4, what="dx")
    assert_close(dw, dw0 + (dout * xhat).sum(0), rtol=1e-4, atol=1e-4, what="dweight")
    assert_close(db, db0 + dout.sum(0), rtol=1e-4, atol=1e-4, what="dbias")


GELU_K = math.sqrt(2.0 / math.pi)


def test_gelu_forward_backward(rng):
    shape = tuple(rng.integers(1, 9, size=3))
    x = randn(rng, *shape) * 3
    out = np.zeros_like(x)
    dtrain.ops.gelu(out, x)
    xd = x.astype(np.float64)
    inner = GELU_K * (xd + 0.044715 * xd ** 3)
    assert_close(out, 0.5 * xd * (1 + np.tanh(inner)), rtol=1e-5, atol=1e-5, what="gelu")
    dout = randn(rng, *shape)
    dx0 = randn(rng, *shape)
    dx = dx0.copy()
    dtrain.ops.gelu_backward(dx, dout, x)
    th = np.tanh(inner)
    grad = 0.5 * (1 + th) + 0.5 * xd * (1 - th ** 2) * GELU_K * (1 + 3 * 0.044715 * xd ** 2)
    assert_close(dx, dx0 + dout * grad, rtol=1e-4, atol=1e-5, what="dx")


def attention_ref(qkv, nh):
    b, t, c3 = qkv.shape
    c = c3 // 3
    hs = c // nh
    q, k, v = (qkv[..., i * c:(i + 1) * c].reshape(b, t, nh, hs).transpose(0, 2, 1, 3) for i in range(3))
    s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hs)
    s = np.where(np.tril(np.ones((t, t), bool)), s, -np.inf)
    m = s.max(-1, keepdims=True)
    lse = (m + np.log(np.exp(s - m).sum(-1, keepdims=True)))[..., 0]
    p = np.exp(s - lse[..., None])
    y = p @ v
    return y.transpose(0, 2, 1, 3).reshape(b, t, c), lse, (q, k, v, p)


def test_attention_forward_backward(rng):
    b, t, nh = rng.integers(1, 4), rng.integers(1, 12), rng.integers(1, 4)
    hs = rng.integers(1, 9)
    c = nh * hs
    qkv = randn(rng, b, t, 3 * c)
    out, lse = np.zeros((b, t, c), f32), np.zeros((b, nh, t), f32)
    dtrain.ops.attention(out, lse, qkv, nh)
    ref, ref_lse, (q, k, v, p) = attention_ref(qkv.astype(np.float64), nh)
    assert_close(out, ref, rtol=1e-4, atol=1e-4, what="attention out")
    assert_close(lse, ref_lse, rtol=1e-4, atol=1e-4, what="attention lse")

    dout = randn(rng, b, t, c)
    dqkv0 = randn(rng, b, t, 3 * c)
    dqkv = dqkv0.copy()
    dtrain.ops.attention_backward(dqkv, dout, qkv, out, lse, nh)
    dy = dout.astype(np.float64).reshape(b, t, nh, hs).transpose(0, 2, 1, 3)
    dv = p.transpose(0, 1, 3, 2) @ dy
    dp = dy @ v.transpose(0, 1, 3, 2)
    ds = p * (dp - (dp * p).sum(-1, keepdims=True)) / math.sqrt(hs)
    dq, dk = ds @ k, ds.transpose(0, 1, 3, 2) @ q
    ref_d = np.concatenate([g.transpose(0, 2, 1, 3).reshape(b, t, c) for g in (dq, dk, dv)], axis=-1)
    assert_close(dqkv, dqkv0 + ref_d, rtol=1e-4, atol=1e-4, what="dqkv")


def test_softmax_cross_entropy(rng):
    n, v = rng.integers(1, 20), rng.integers(2, 50)
    logits = randn(rng, n, v) * 2
    targets = rng.integers(0, v, size=n).astype(np.int32)
    targets[0] = -100  # ignored
    losses, dlogits = np.zeros(n, f32), np.full((n, v), 7.0, f32)
    dtrain.ops.softmax_cross_entropy(losses, dlogits, logits, targets, grad_scale=0.25)
    ld = logits.astype(np.float64)
    m = ld.max(-1, keepdims=True)
    logp = ld - m - np.log(np.exp(ld - m).sum(-1, keepdims=True))
    keep = targets != -100
    ref = np.where(keep, -logp[np.arange(n), np.where(keep, targets, 0)], 0.0)
    assert_close(losses, ref, rtol=1e-5, atol=1e-5, what="losses")
    onehot = np.zeros_like(ld)
    onehot[np.arange(n)[keep], targets[keep]] = 1
    ref_d = (np.exp(logp) - onehot) * 0.25 * keep[:, None]
    assert_close(dlogits, ref_d, rtol=1e-4, atol=1e-6, what="dlogits (written, not accumulated)")
    bad = targets.copy()
    bad[-1] = v
    with pytest.raises(dtrain.DtrainValueError, match="out of range"):
        dtrain.ops.softmax_cross_entropy(losses, None, logits, bad)


def test_embedding_forward_backward(rng):
    b, t, v, c = rng.integers(1, 5), rng.integers(1, 9), rng.integers(2, 30), rng.integers(1, 17)
    max_t = t + int(rng.integers(0, 4))
    tokens = rng.integers(0, v, size=(b, t)).astype(np.int32)
    wte, wpe = randn(rng, v, c), randn(rng, max_t, c)
    out = np.zeros((b, t, c), f32)
    dtrain.ops.embedding(out, tokens, wte, wpe)
    assert_close(out, wte[tokens] + wpe[:t], rtol=1e-6, atol=1e-6, what="embedding")
    dout = randn(rng, b, t, c)
    dwte0, dwpe0 = randn(rng, v, c), randn(rng, max_t, c)
    dwte, dwpe = dwte0.copy(), dwpe0.copy()
    dtrain.ops.embedding_backward(dwte, dwpe, dout, tokens)
    ref_wte = dwte0.astype(np.float64).copy()
    np.add.at(ref_wte, tokens.reshape(-1), dout.reshape(-1, c))
    ref_wpe = dwpe0.astype(np.float64).copy()
    ref_wpe[:t] += dout.sum(0)
    assert_close(dwte, ref_wte, rtol=1e-5, atol=1e-5, what="dwte")
    assert_close(dwpe, ref_wpe, rtol=1e-5, atol=1e-5, what="dwpe")


def test_elementwise(rng):
    shape = tuple(rng.integers(1, 7, size=2))
    a, b = randn(rng, *shape), randn(rng, *shape)
    out = np.zeros_like(a)
    dtrain.ops.add(out, a, b)
    assert_close(out, a + b, what="add")
    y = a.copy()
    dtrain.ops.add_(y, b, alpha=-0.5)
    assert_close(y, a - 0.5 * b, what="add_")
    dtrain.ops.scale(out, a, 3.0)
    assert_close(out, 3 * a, what="scale")
    half = np.zeros(shape, np.float16)
    dtrain.ops.cast(half, a)
    assert_close(half, a.astype(np.float16), what="cast to f16")
    back = np.zeros_like(a)
    dtrain.ops.cast(back, half)
    assert_close(back, half.astype(f32), what="cast from f16")


def test_adamw_step_and_global_norm(rng):
    n = rng.integers(1, 50)
    p, g = randn(rng, n), randn(rng, n)
    m1, m2 = np.zeros(n, f32), np.zeros(n, f32)
    p0 = p.copy()
    dtrain.ops.adamw_step([{"param": p, "grad": g, "exp_avg": m1, "exp_avg_sq": m2, "weight_decay": 0.1}],
                          lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, step=1, grad_scale=0.5)
    gs = 0.5 * g.astype(np.float64)
    rm1, rm2 = 0.1 * gs, 0.001 * gs ** 2
    ref = p0 * (1 - 0.01 * 0.1) - 0.01 * (rm1 / 0.1) / (np.sqrt(rm2 / 0.001) + 1e-8)
    assert_close(m1, rm1, rtol=1e-4, atol=1e-7, what="exp_avg")
    assert_close(m2, rm2, rtol=1e-4, atol=1e-9, what="exp_avg_sq")
    assert_close(p, ref, rtol=1e-4, atol=1e-6, what="param")
    xs = [randn(rng, 3, 4), randn(rng, 7)]
    assert_close(dtrain.ops.global_norm(xs), math.sqrt(sum(float((x.astype(np.float64) ** 2).sum()) for x in xs)),
                 rtol=1e-5)


def test_op_errors_raise_the_right_class():
    x = np.zeros((2, 3), f32)
    with pytest.raises(dtrain.DtrainValueError, match="wrong shape"):
        dtrain.ops.gelu(np.zeros((3, 2), f32), x)
    with pytest.raises(dtrain.DtrainTypeError, match="wrong dtype"):
        dtrain.ops.gelu(np.zeros((2, 3), np.int32), x)
    with pytest.raises(dtrain.DtrainValueError, match="not C-contiguous"):
        dtrain.ops.gelu(x, np.zeros((3, 2), f32).T)
    ro = np.zeros((2, 3), f32)
    ro.setflags(write=False)
    with pytest.raises(dtrain.DtrainValueError, match="read-only"):
        dtrain.ops.gelu(ro, x)
    with pytest.raises(dtrain.DtrainTypeError, match="unsupported dtype"):
        dtrain.ops.gelu(x, np.zeros((2, 3)))
    with pytest.raises(dtrain.DtrainTypeError):
        dtrain.ops.gelu(x, [[0.0] * 3] * 2)


@pytest.mark.skipif(dtrain.cuda_is_available(), reason="checks the error raised without a usable GPU")
def test_wrong_device_is_a_dtrain_error():
    with pytest.raises(dtrain.DtrainError):
        dtrain.ops.gelu(dtrain.zeros((2,), device="cuda"), dtrain.zeros((2,)))
