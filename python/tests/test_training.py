"""Training pieces: optimizers against NumPy references, the schedule,
clipping, the data loader and built-in additions, and the data-parallel
engine on one process (no_sync, the ledger, a short run that learns)."""
import contextlib
import math

import numpy as np
import pytest

import dtrain
from conftest import assert_close


def test_sgd_matches_numpy(rng):
    n = int(rng.integers(1, 30))
    value = rng.standard_normal(n).astype(np.float32)
    grad = rng.standard_normal(n).astype(np.float32)
    v0 = value.copy()
    group = dtrain.optim.ParamGroup("all", [dtrain.optim.ParamRef(value, grad, "p")], weight_decay=0.1)
    opt = dtrain.optim.SGD([group], momentum=0.9)
    assert opt.momentum == pytest.approx(0.9) and "ParamGroup('all'" in repr(opt.groups[0])
    buf = np.zeros(n)
    ref = v0.astype(np.float64)
    for _ in range(3):
        opt.step(0.05, grad_scale=0.5)
        ref *= 1 - 0.05 * 0.1
        buf = 0.9 * buf + 0.5 * grad
        ref -= 0.05 * buf
    assert opt.steps_done == 3
    assert_close(value, ref, rtol=1e-5, atol=1e-6, what="SGD")
    names = [name for name, _ in opt.state()]
    assert len(names) == 1


def test_adamw_on_a_module_and_state():
    model = dtrain.nn.gpt("tiny", n_layer=1)
    opt = dtrain.optim.AdamW(model, weight_decay=0.1, beta2=0.99)
    assert [g.name for g in opt.groups] == ["decay", "no_decay"]
    opt.init_state()
    assert len(opt.state()) == 2 * len(model.named_parameters())
    with pytest.raises(dtrain.DtrainValueError):
        dtrain.optim.AdamW(opt.groups, weight_decay=0.1)


def test_cosine_schedule():
    s = dtrain.optim.CosineSchedule(max_lr=1.0, min_lr=0.1, warmup_steps=10, total_steps=110)
    assert s(0) == pytest.approx(0.1) and s.lr(9) == pytest.approx(1.0)
    mid = 10 + 50
    assert s(mid) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)), rel=1e-3)
    assert s(500) == pytest.approx(0.1)


def test_clipping():
    assert dtrain.optim.clip_scale(0.5, 1.0) == 1.0
    assert dtrain.optim.clip_scale(4.0, 1.0) == pytest.approx(0.25, rel=1e-5)
    assert dtrain.optim.clip_scale(4.0, 0.0) == 1.0
    with pytest.raises(dtrain.DtrainError):
        dtrain.optim.clip_scale(float("nan"), 1.0)
    g = dtrain.tensor(np.array([3.0, 4.0], np.float32))
    assert dtrain.optim.grad_norm([g]) == pytest.approx(5.0)
    assert dtrain.optim.clip_grad_norm([g], 1.0) == pytest.approx(5.0)
    assert_close(g, [0.6, 0.8], rtol=1e-4, what="clipped")


def test_data_loader_serves_windows():
    tokens = np.arange(1000, dtype=np.uint16)
    src = dtrain.data.MemoryTokens(tokens, "counting")
    assert len(src) == 1000 and "counting" in repr(src)
    loader = dtrain.data.DataLoader([src], global_batch=4, seq_len=8, rank=1, world_size=2)
    x, y = loader.next()
    assert x.shape == (2, 8) and x.dtype == dtrain.i32 and loader.local_batch == 2
    np.testing.assert_array_equal(x.numpy(), np.arange(16, 32).reshape(2, 8))  # rank 1: rows 2-3
    np.testing.assert_array_equal(y.numpy(), np.arange(17, 33).reshape(2, 8))
    pos = loader.position
    first = next(iter(loader))[0].numpy().copy()
    loader.position = pos
    np.testing.assert_array_equal(loader.next()[0].numpy(), first)
    assert loader.batches_per_epoch > 0
    with pytest.raises(dtrain.DtrainError):
        dtrain.data.DataLoader([src], global_batch=3, seq_len=8, rank=0, world_size=2)


def test_shards_and_bytes(tmp_path):
    path = str(tmp_path / "s.bin")
    dtrain.data.write_token_shard(path, [1, 2, 3, 65535])
    assert dtrain.data.read_token_shard(path) == [1, 2, 3, 65535]
    assert len(dtrain.data.ShardFile(path)) == 4
    (tmp_path / "bad.bin").write_bytes(b"nope")
    with pytest.raises(dtrain.DtrainError, match="bad.bin"):
        dtrain.data.ShardFile(str(tmp_path / "bad.bin"))
    assert dtrain.data.decode_bytes(dtrain.data.encode_bytes("hi!")) == "hi!"


def test_addition_dataset():
    ds = dtrain.data.AdditionDataset(2)
    # Sums are written least significant digit first: 65 -> "065" -> "560".
    assert ds.problem_text(7, 58) == "07+58=560\n" and ds.line_length == 10
    pairs = ds.held_out(5, 1)
    assert all(ds.is_held_out(a, b) for a, b in pairs)
    perfect = ds.evaluate(pairs, lambda prompts, n: [
        list(ds.answer_text(a, b).encode()) + [10] for a, b in pairs])
    assert perfect.exact == 1.0 and perfect.problems == 5
    assert ds.baseline(pairs).exact <= 1.0


def tiny_setup(seed=5):
    model = dtrain.nn.gpt("tiny", n_layer=1, seed=seed)
    ds = dtrain.data.AdditionDataset(2)
    tokens = np.array(ds.train_tokens(2000, seed), np.uint16)
    return model, tokens


def test_data_parallel_single_process_learns(tmp_path):
    model, tokens = tiny_setup()
    comm = dtrain.Communicator(dtrain.FileStore(str(tmp_path / "s")), 0, 1, timeout=30)
    engine = dtrain.parallel.DataParallel(model, comm, stage=1, grad_accumulation=2)
    assert "stage=1" in repr(engine) and engine.world_size == 1 and engine.grad_scale == pytest.approx(0.5)
    opt = dtrain.optim.AdamW(engine.param_groups(0.1))
    loader = dtrain.data.DataLoader([dtrain.data.MemoryTokens(tokens)], global_batch=8, seq_len=30)
    losses = []
    for _ in range(12):
        total = 0.0
        for micro in range(2):
            with engine.no_sync() if micro == 0 else contextlib.nullcontext():
                x, y = loader.next()
                total += model(x, y, grad_scale=engine.grad_scale)
                model.backward()
        result = engine.step(opt, 3e-3, max_grad_norm=1.0)
        assert math.isfinite(result.grad_norm) and not result.skipped
        losses.append(total / 2)
    assert losses[-1] < losses[0] - 0.5, losses
    ledger = engine.ledger(opt)
    assert ledger.parameters > 0 and ledger.optimizer_state > 0 and "MemoryLedger(" in repr(ledger)
    assert engine.predicted().model_state > 0
    assert "bucket" in engine.describe_plan() or engine.groups
    full = dict(engine.full_parameters())
    assert full["embed.wte"].shape == (256, 128)
    assert engine.average(3.0) == pytest.approx(3.0)
    assert dtrain.parallel.predict_model_state(0, 100, 1).model_state == 100 * 16


def test_no_sync_checks_the_micro_step(tmp_path):
    model, tokens = tiny_setup()
    comm = dtrain.Communicator(dtrain.FileStore(str(tmp_path / "s")), 0, 1, timeout=30)
    x = tokens[:16].astype(np.int32).reshape(2, 8)
    y = tokens[1:17].astype(np.int32).reshape(2, 8)
    single = dtrain.parallel.DataParallel(model, comm)
    with pytest.raises(dtrain.DtrainValueError, match="grad_accumulation > 1"):
        with single.no_sync():
            pass
    del single
    engine = dtrain.parallel.DataParallel(model, comm, grad_accumulation=2)
    with engine.no_sync():
        model(x, y, grad_scale=engine.grad_scale)
        model.backward()
    with pytest.raises(dtrain.DtrainError, match="communicating one"):
        with engine.no_sync():
            model(x, y, grad_scale=engine.grad_scale)
            model.backward()
    with pytest.raises(dtrain.DtrainValueError):
        dtrain.parallel.DataParallel(model, comm, precision="f8")
