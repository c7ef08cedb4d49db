"""Mixed precision and checkpoints from Python: a bf16 GPT trains through the
data-parallel engine, recompute leaves the losses unchanged, and a run resumed
from a checkpoint into fresh objects continues bit for bit as the
uninterrupted one (f32 and bf16, several ZeRO stages). A damaged checkpoint
raises DtrainError naming the file and loads nothing."""
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import dtrain

LR = 3e-3


class Run:
    """A one-process training run: GPT, engine, AdamW over its groups, loader."""

    def __init__(self, store, dtype="f32", stage=1, recompute=0, seed=5, **engine_options):
        ds = dtrain.data.AdditionDataset(2)
        self.tokens = np.array(ds.train_tokens(2000, 5), np.uint16)
        self.model = dtrain.nn.gpt("tiny", n_layer=1, seed=seed, dtype=dtype, recompute=recompute)
        self.comm = dtrain.Communicator(dtrain.FileStore(str(store)), 0, 1, timeout=30)
        self.engine = dtrain.parallel.DataParallel(self.model, self.comm, stage=stage, precision=dtype,
                                                   **engine_options)
        self.opt = dtrain.optim.AdamW(self.engine.param_groups(0.1))
        self.loader = dtrain.data.DataLoader([dtrain.data.MemoryTokens(self.tokens)], global_batch=4, seq_len=24)
        self.skipped = 0  # steps the f16 loss scaler skipped (never under f32 and bf16)

    def train(self, steps):
        losses = []
        for _ in range(steps):
            x, y = self.loader.next()
            loss = self.model(x, y, grad_scale=self.engine.grad_scale)
            self.model.backward()
            result = self.engine.step(self.opt, LR, max_grad_norm=1.0)
            assert math.isfinite(loss) and (result.skipped or math.isfinite(result.grad_norm))
            self.skipped += result.skipped
            losses.append(loss)
        return losses

    def parameters(self):
        """Every parameter in full as f32 NumPy copies (any ZeRO stage; exact for bf16/f16)."""
        return {name: t.numpy().copy() for name, t in self.engine.full_parameters()}


def test_gpt_config_dtype_and_recompute():
    c = dtrain.nn.GPTConfig(n_layer=1, dtype="bf16", recompute=2)
    assert c.param_dtype == dtrain.bf16 and c.compute_dtype == dtrain.bf16 and c.dtype == dtrain.bf16
    assert c.recompute == 2 and "dtype=bf16" in str(c) and "recompute=2" in str(c)
    c.dtype = dtrain.f16
    assert (c.param_dtype, c.compute_dtype) == (dtrain.f16, dtrain.f16)
    c.param_dtype = "float32"
    with pytest.raises(dtrain.DtrainValueError, match="differ"):
        c.dtype
    with pytest.raises(dtrain.DtrainError, match="compute_dtype"):
        c.validate()
    with pytest.raises(dtrain.DtrainValueError, match="not both"):
        dtrain.nn.GPTConfig(dtype="bf16", param_dtype="bf16")
    with pytest.raises(dtrain.DtrainTypeError):
        dtrain.nn.GPTConfig(dtype="f8")
    with pytest.raises(dtrain.DtrainError, match="recompute"):
        dtrain.nn.GPT(dtrain.nn.GPTConfig(recompute=3))
    model = dtrain.nn.gpt("tiny", n_layer=1, dtype="bf16")
    assert model.config.dtype == dtrain.bf16
    assert {p.dtype for p in model.parameters()} == {dtrain.bf16}


def test_bf16_gpt_trains_through_the_engine(tmp_path):
    run = Run(tmp_path / "s", dtype="bf16")
    losses = run.train(8)
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0] - 0.2, losses
    assert {p.dtype for p in run.model.parameters()} == {dtrain.bf16}
    assert all(r.value.dtype == dtrain.f32 for g in run.opt.groups for r in g.params)  # f32 masters


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_recompute_leaves_losses_unchanged(tmp_path, dtype):
    keep = Run(tmp_path / "a", dtype=dtype, recompute=0).train(3)
    recomputed = Run(tmp_path / "b", dtype=dtype, recompute=2).train(3)
    assert keep == recomputed


@pytest.mark.parametrize("dtype,stage", [("f32", 0), ("f32", 2), ("bf16", 1), ("f16", 3)])
def test_resume_continues_bit_for_bit(tmp_path, dtype, stage):
    root = tmp_path / "ckpt"
    # f16: a loss scale so high that the first 4 steps overflow and are skipped, halving it each time, so the
    # checkpoint's scaler state (2**17 after 3 skips) differs from a fresh engine's and must be restored.
    options = {"initial_loss_scale": 2.0**20} if dtype == "f16" else {}
    first = Run(tmp_path / "s1", dtype=dtype, stage=stage, **options)
    first.train(3)
    skipped_at_save = first.skipped
    assert skipped_at_save == (3 if dtype == "f16" else 0)
    path = dtrain.checkpoint.save(root, first.model, first.opt, first.engine, step=3, data=first.loader.position,
                                  hyper={"lr": LR}, seed=5)
    assert os.path.basename(path) == "step-00000003" and dtrain.checkpoint.find_latest(str(root)) == path
    expected = first.train(3)
    expected_params = first.parameters()

    # Fresh objects with other initial weights: everything must come from the checkpoint.
    if dtype == "f16":
        assert 0 < first.skipped < 6  # the run updated after the save: the last losses depend on the scale
    second = Run(tmp_path / "s2", dtype=dtype, stage=stage, seed=99, **options)
    meta = dtrain.checkpoint.resume(root, second.model, second.opt, second.engine, loader=second.loader)
    assert (meta.step, meta.param_dtype, meta.zero_stage) == (3, dtype, stage)
    assert meta.optimizer_steps == second.opt.steps_done == 3 - skipped_at_save  # skipped steps do not count
    assert meta.has_loss_scaler == (dtype == "f16")
    assert meta.hyper == {"lr": pytest.approx(LR)} and meta.model["n_layer"] == 1
    assert second.loader.position == meta.data
    assert second.train(3) == expected
    for name, value in second.parameters().items():
        np.testing.assert_array_equal(value.view(np.uint8), expected_params[name].view(np.uint8), err_msg=name)


def test_save_async_keep_last_and_reader(tmp_path):
    root = tmp_path / "ckpt"
    assert dtrain.checkpoint.find_latest(str(root)) is None
    with pytest.raises(dtrain.DtrainError, match="no complete checkpoint"):
        dtrain.checkpoint.open_checkpoint(root)
    run = Run(tmp_path / "s", stage=1)
    paths = []
    for step in range(1, 4):
        run.train(1)
        pending = dtrain.checkpoint.save_async(root, run.model, run.opt, run.engine, step=step, keep_last=2)
        assert isinstance(pending, dtrain.checkpoint.PendingSave)
        paths.append(pending.finish())
        assert pending.finished
    assert dtrain.checkpoint.find_latest(root) == paths[-1]
    assert sorted(os.listdir(root)) == ["latest", "step-00000002", "step-00000003"]
    reader = dtrain.checkpoint.open_checkpoint(root)
    assert reader.dir == paths[-1] and reader.meta.step == 3 and "step=3" in repr(reader.meta)
    assert isinstance(reader.meta, dtrain.checkpoint.Meta) and reader.meta.schedule_step == 3
    assert not reader.meta.has_loss_scaler  # f32: no loss scaler
    assert "embed.wte.exp_avg" in reader.tensor_names() and reader.files() == ["rank-00000.safetensors"]
    reader.verify_all()
    reader.verify(reader.files()[0])
    assert dtrain.checkpoint.Reader(paths[1]).meta.step == 2
    # load_parameters: the weights alone, into a model without engine or optimizer.
    plain = dtrain.nn.gpt("tiny", n_layer=1, seed=42)
    reader.load_parameters(plain)
    for name, p in plain.named_parameters():
        np.testing.assert_array_equal(p.value.numpy(), run.model.parameter(name).value.numpy(), err_msg=name)
    np.testing.assert_array_equal(reader.read_full("embed.wte").numpy(), run.model.parameter("embed.wte").value.numpy())


def test_damaged_checkpoint_names_the_file_and_loads_nothing(tmp_path):
    root = tmp_path / "ckpt"
    run = Run(tmp_path / "s1")
    run.train(2)
    path = dtrain.checkpoint.save(root, run.model, run.opt, run.engine, step=2)
    shard = os.path.join(path, "rank-00000.safetensors")
    data = bytearray(open(shard, "rb").read())
    data[len(data) // 2] ^= 0x01
    open(shard, "wb").write(bytes(data))

    fresh = Run(tmp_path / "s2", seed=99)
    before = fresh.parameters()
    with pytest.raises(dtrain.DtrainError, match="rank-00000.safetensors"):
        dtrain.checkpoint.resume(root, fresh.model, fresh.opt, fresh.engine)
    for name, value in fresh.parameters().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    assert fresh.opt.steps_done == 0


def test_resume_refuses_another_model(tmp_path):
    root = tmp_path / "ckpt"
    run = Run(tmp_path / "s1")
    dtrain.checkpoint.save(root, run.model, run.opt, run.engine, step=0)
    model = dtrain.nn.gpt("tiny", n_layer=2)
    comm = dtrain.Communicator(dtrain.FileStore(str(tmp_path / "s2")), 0, 1, timeout=30)
    engine = dtrain.parallel.DataParallel(model, comm)
    opt = dtrain.optim.AdamW(engine.param_groups(0.1))
    with pytest.raises(dtrain.DtrainError, match="different model"):
        dtrain.checkpoint.resume(root, model, opt, engine)


def test_resume_into_another_precision_warns(tmp_path):
    root = tmp_path / "ckpt"
    run = Run(tmp_path / "s1", dtype="f32")
    run.train(1)
    dtrain.checkpoint.save(root, run.model, run.opt, run.engine, step=1)
    low = Run(tmp_path / "s2", dtype="bf16", seed=99)
    with pytest.warns(UserWarning, match="saved in f32, resumed in bf16"):
        dtrain.checkpoint.resume(root, low.model, low.opt, low.engine)
    assert all(math.isfinite(x) for x in low.train(1))


def test_checkpoint_from_python_is_read_by_a_new_process(tmp_path):
    """The saved directory alone resumes in another interpreter (no shared state)."""
    root = tmp_path / "ckpt"
    run = Run(tmp_path / "s1")
    run.train(2)
    dtrain.checkpoint.save(root, run.model, run.opt, run.engine, step=2, data=run.loader.position)
    expected = run.train(1)
    script = (
        "import sys, dtrain, numpy as np\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "from test_checkpoint import Run\n"
        "r = Run(sys.argv[3], seed=99)\n"
        "dtrain.checkpoint.resume(sys.argv[1], r.model, r.opt, r.engine)\n"
        "r.loader.position = dtrain.checkpoint.open_checkpoint(sys.argv[1]).meta.data\n"
        "print(repr(r.train(1)[0]))\n")
    out = subprocess.run([sys.executable, "-c", script, str(root), os.path.dirname(__file__), str(tmp_path / "s2")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.strip()) == expected[0]


def test_encrypted_checkpoint_needs_its_key(tmp_path):
    root = tmp_path / "ckpt"
    key = "0123456789abcdef" * 4
    run = Run(tmp_path / "s1")
    run.train(1)
    dtrain.checkpoint.save(root, run.model, run.opt, run.engine, step=1, key=key)
    expected = run.parameters()
    with pytest.raises(dtrain.DtrainError, match="manifest.json is encrypted"):
        dtrain.checkpoint.open_checkpoint(root)
    with pytest.raises(dtrain.DtrainError, match="different key"):
        dtrain.checkpoint.open_checkpoint(root, key="1" * 64)
    fresh = Run(tmp_path / "s2", seed=99)
    dtrain.checkpoint.resume(root, fresh.model, fresh.opt, fresh.engine, key=key)
    for name, value in fresh.parameters().items():
        np.testing.assert_array_equal(value, expected[name], err_msg=name)
