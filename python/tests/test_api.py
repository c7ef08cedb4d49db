"""The rest of the bound API, one small check each, and a guard that every
name dtrain._C exports (functions, classes, methods, properties) is used by
some test, so a new binding cannot arrive untested."""
import inspect
import re
from pathlib import Path

import numpy as np
import pytest

import dtrain
from dtrain import _C

# Types that exist to be returned, not built or called, and are checked
# through the objects that return them.
RETURN_ONLY = {"nn.TiedLMHead"}


def test_every_binding_is_exercised_by_a_test():
    here = Path(__file__).resolve().parent
    text = "".join(p.read_text() for p in here.rglob("*.py"))
    missing = []

    def walk(module, prefix):
        for name in dir(module):
            if name.startswith("__"):
                continue
            obj = getattr(module, name)
            if inspect.ismodule(obj):
                if obj.__name__.startswith("dtrain._C"):
                    walk(obj, prefix + name + ".")
                continue
            if prefix + name not in RETURN_ONLY and not re.search(rf"\b{re.escape(name)}\b", text):
                missing.append(prefix + name)
            if inspect.isclass(obj) and not issubclass(obj, BaseException):
                for member in vars(obj):
                    if not member.startswith("_") and not re.search(rf"\b{re.escape(member)}\b", text):
                        missing.append(f"{prefix}{name}.{member}")

    walk(_C, "")
    assert not missing, f"bindings no test uses: {missing}"


def test_dtype_and_device_details():
    assert isinstance(dtrain.f32, dtrain.DType) and dtrain.DType.f32.is_floating and not dtrain.i32.is_floating
    assert dtrain.Device("cuda:2").index == 2 and dtrain.Device("cuda:2").type == "cuda"
    assert dtrain.cuda_device_count() >= 0 and isinstance(dtrain.cuda_compiled(), bool)
    t = dtrain.full((3,), 5.0)
    t.zero_()
    assert t.tolist() == [0.0] * 3
    assert isinstance(dtrain.FileStore, type) and issubclass(dtrain.FileStore, dtrain.Store)


def test_split_communicator(tmp_path):
    comm = dtrain.Communicator(dtrain.FileStore(str(tmp_path / "s")), 0, 1, timeout=20)
    sub = comm.split(color=0, key=0)
    assert sub.size == 1 and sub.rank == 0
    assert comm.split(color=-1) is None


def test_bench_loops_run(tmp_path):
    comm = dtrain.Communicator(dtrain.FileStore(str(tmp_path / "s")), 0, 1, timeout=20)
    assert _C._bench.all_reduce_loop(comm, np.ones(4, np.float32), 3) >= 0
    model = dtrain.nn.gpt("tiny", n_layer=1)
    tokens = np.array(dtrain.data.AdditionDataset(2).train_tokens(200, 1), np.uint16)
    loader = dtrain.data.DataLoader([dtrain.data.MemoryTokens(tokens)], 2, 20)
    opt = dtrain.optim.AdamW(model)
    sched = dtrain.optim.CosineSchedule(max_lr=1e-3, total_steps=10)
    assert _C._bench.train_loop(model, loader, opt, sched, 0, 1, 1.0) > 0
    assert opt.steps_done == 1


def test_data_details(tmp_path):
    ds = dtrain.data.AdditionDataset(2)
    assert ds.prompt_text(1, 2) == "01+02="
    text = tmp_path / "t.txt"
    text.write_text("hello world " * 50)
    paths = dtrain.data.tokenize_file_to_shards(str(text), str(tmp_path / "tok"), 256)
    assert len(paths) == 3
    loader = dtrain.data.DataLoader.from_pattern(str(tmp_path / "tok_*.bin"), 2, 8)
    pos = loader.position
    assert (pos.epoch, pos.shard, pos.offset) == (0, 0, 0)
    sources = [dtrain.data.ShardFile(p) for p in paths]
    assert all(isinstance(s, dtrain.data.TokenSource) for s in sources)
    score = ds.evaluate(ds.held_out(2, 1), lambda prompts, n: [[10]] * len(prompts))
    assert isinstance(score, dtrain.data.AdditionScore) and score.exact == 0.0


def test_nn_details(rng):
    model = dtrain.nn.gpt("tiny", n_layer=1)
    assert model.flops_per_token(64) > 0
    model.set_checkpointing(True)
    assert model.blocks[0].checkpointing
    x = rng.integers(0, 256, size=(1, 8)).astype(np.int32)
    before = model.parameter("blocks.0.ln1.weight").value.numpy().copy()
    model.init_weights(99)
    np.testing.assert_array_equal(model.parameter("blocks.0.ln1.weight").value.numpy(), before)  # gains stay 1
    loss = model(x, x)
    model.backward()
    assert np.isfinite(loss)
    model.release_activations()
    model.config.validate()
    block = model.blocks[0]
    assert isinstance(block.ln1, dtrain.nn.LayerNorm) and isinstance(block.ln2, dtrain.nn.LayerNorm)
    assert isinstance(block.attn, dtrain.nn.CausalSelfAttention) and isinstance(block.mlp, dtrain.nn.MLP)
    assert [name for name, _ in model.children()] == ["embed", "blocks", "ln_f", "head"]
    assert [p.name for p in block.ln1.direct_parameters()] == ["weight", "bias"]
    assert all(isinstance(p, dtrain.nn.Parameter) for p in model.parameters())
    lin = dtrain.nn.Linear(3, 5, bias=False)
    assert (lin.in_features, lin.out_features) == (3, 5) and lin.bias is None
    parent = dtrain.nn.Module(type_name="Holder")
    parent.add_module("inner", lin)
    assert [n for n, _ in parent.named_parameters()] == ["inner.weight"]
    events = []
    for point in (dtrain.nn.HookPoint.pre_forward, dtrain.nn.HookPoint.post_forward,
                  dtrain.nn.HookPoint.pre_backward):
        lin.add_hook(point, lambda m, p=point: events.append(p.name))
    lin.forward(np.ones((2, 3), np.float32))
    lin.backward(np.ones((2, 5), np.float32))
    assert events == ["pre_forward", "post_forward", "pre_backward"]
    attn = dtrain.nn.CausalSelfAttention(8, 2)
    assert attn.qkv.out_features == 24 and attn.proj.in_features == 8
    mlp = dtrain.nn.MLP(4, 16)
    assert mlp.fc.out_features == 16 and mlp.proj.out_features == 4
    assert mlp.forward(np.ones((1, 2, 4), np.float32)).shape == (1, 2, 4)
    assert len(dtrain.nn.ModuleList()) == 0


def test_optimizer_details():
    model = dtrain.nn.gpt("tiny", n_layer=1)
    opt = dtrain.optim.SGD(model, weight_decay=0.0)
    assert isinstance(opt, dtrain.optim.Optimizer)
    assert all(g.lr_scale == 1.0 for g in opt.groups)
    opt.zero_grad()
    assert all(float(np.abs(g.numpy()).sum()) == 0.0 for g in opt.grads())
    opt.steps_done = 5
    assert opt.steps_done == 5


def test_engine_details(tmp_path):
    model = dtrain.nn.gpt("tiny", n_layer=1)
    comm = dtrain.Communicator(dtrain.FileStore(str(tmp_path / "s")), 0, 1, timeout=20)
    engine = dtrain.parallel.DataParallel(model, comm, stage=2, precision=dtrain.parallel.Precision.f32, trace=True)
    opt = dtrain.optim.AdamW(engine.param_groups(0.1))
    x = np.zeros((2, 8), np.int32)
    model(x, x, grad_scale=engine.grad_scale)
    model.backward()
    result = engine.step(opt, 1e-3)
    assert isinstance(result, dtrain.parallel.StepResult) and result.loss_scale == 1.0
    engine.wait_for_parameters()
    group = engine.groups[0]
    assert isinstance(group, dtrain.parallel.GroupInfo)
    assert group.padded_numel >= group.numel and group.shard_offset == 0 and group.shard_numel == group.padded_numel
    ledger = engine.ledger(opt)
    assert ledger.gradients >= 0 and ledger.comm_buffers >= 0 and ledger.activations >= 0
    table = dtrain.parallel.format_ledger(ledger, engine.predicted(), 2, 1)
    assert "MiB" in table
    assert engine.trace_jsonl() == "" or engine.trace_jsonl().startswith("{")


def test_lr_scale_applies(tmp_path):
    value = np.ones(2, np.float32)
    grad = np.ones(2, np.float32)
    group = dtrain.optim.ParamGroup("g", [dtrain.optim.ParamRef(value, grad)], lr_scale=0.5)
    dtrain.optim.SGD([group], momentum=0.0).step(1.0)
    assert value.tolist() == pytest.approx([0.5, 0.5])


def test_value_types():
    assert dtrain.ReduceOp.min.name == "min"
    ds = dtrain.data.AdditionDataset(3)
    assert ds.digits == 3 and len(ds.held_out_tokens(10, 1)) == 10 * ds.line_length
    pos = dtrain.data.LoaderPosition(epoch=1, shard=0, offset=5)
    assert pos == dtrain.data.LoaderPosition(1, 0, 5) and "offset=5" in repr(pos)
    config = dtrain.nn.GPTConfig(n_layer=1, vocab_size=300, max_seq_len=64, checkpoint_activations=True)
    assert (config.vocab_size, config.max_seq_len, config.checkpoint_activations) == (300, 64, True)
    score = ds.baseline(ds.held_out(3, 2))
    assert 0.0 <= score.digits <= 1.0
