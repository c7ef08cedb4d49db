"""dtrain.nn: modules, layers and the GPT model.

Modules have an explicit forward and backward (no autograd). Write your own in
Python by subclassing dtrain.nn.Module: assigning a module or making a
parameter registers it, so named_parameters(), zero_grad() and the
data-parallel engine see it like any built-in module:

    class TwoLayer(dtrain.nn.Module):
        def __init__(self, d, hidden):
            super().__init__()
            self.fc = dtrain.nn.Linear(d, hidden)
            self.proj = dtrain.nn.Linear(hidden, d)
        def forward(self, x):
            self.h = self.fc(x)
            return self.proj(self.h)
        def backward(self, dout, dx=None):
            dh = dtrain.zeros(self.h.shape)
            self.proj.backward(dout, dh)
            self.fc.backward(dh, dx)
"""
from __future__ import annotations

from . import _C
from ._C.nn import (  # noqa: F401
    GPT,
    MLP,
    Block,
    CausalSelfAttention,
    Embedding,
    GPTConfig,
    HookPoint,
    LayerNorm,
    Linear,
    ModuleList,
    Parameter,
    TiedLMHead,
    generate,
    generate_greedy_batch,
    init_normal,
)


class Module(_C.nn.Module):
    """Base class for modules written in Python.

    Attributes that are modules are registered as children under their
    attribute name. forward/backward are yours to write from dtrain's layers
    and ops. As every C++ module does, run this module's hooks at the four
    points (self.run_hooks(HookPoint.pre_forward) first in forward,
    post_forward last, the same for backward) and call self.grad_ready(p)
    after accumulating the gradient of a parameter you made with
    add_parameter: the data-parallel engine (ZeRO 0-3) relies on them.
    """

    def __init__(self, device="cpu", type_name: str | None = None):
        super().__init__(type_name or type(self).__name__, device)

    def __setattr__(self, name, value):
        if isinstance(value, _C.nn.Module) and not name.startswith("_"):
            self.add_module(name, value)
        object.__setattr__(self, name, value)

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__}.forward is not written")

    def backward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__}.backward is not written")


def gpt(preset: str = "tiny", *, device="cpu", seed: int = 1337, **overrides) -> GPT:
    """A GPT from a preset ('tiny', 'gpt2-124m', 'gpt2-350m') with any
    GPTConfig field overridden by keyword: dtrain.nn.gpt('tiny', n_layer=4),
    dtrain.nn.gpt('tiny', dtype='bf16', recompute=2)."""
    config = GPTConfig.preset(preset)
    for key, value in overrides.items():
        if not hasattr(config, key):
            raise _C.DtrainValueError(f"GPTConfig has no field {key!r}")
        setattr(config, key, value)
    config.validate()
    return GPT(config, device, seed)
