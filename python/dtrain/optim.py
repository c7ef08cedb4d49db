"""dtrain.optim: AdamW, SGD, the cosine schedule and gradient clipping.

Optimizers work on groups of (value, grad) tensors, so the data-parallel
engine can hand them its shards; given a module they build the usual two
groups (weight decay on matrices and embeddings, none on biases and gains):

    opt = dtrain.optim.AdamW(model, weight_decay=0.1)            # or engine.param_groups(0.1)
    sched = dtrain.optim.CosineSchedule(max_lr=3e-3, min_lr=3e-4, warmup_steps=20, total_steps=1000)
    opt.step(sched(step), dtrain.optim.clip_scale(dtrain.optim.grad_norm(opt.grads()), 1.0))
"""
from __future__ import annotations

from . import _C
from ._C.optim import (  # noqa: F401
    CosineSchedule,
    Optimizer,
    ParamGroup,
    ParamRef,
    clip_grad_norm,
    clip_scale,
    grad_norm,
    param_groups,
)


def _groups(params, weight_decay):
    if isinstance(params, _C.nn.Module):
        return param_groups(params, weight_decay)
    groups = list(params)
    if weight_decay:
        raise _C.DtrainValueError("weight_decay is given per ParamGroup when groups are passed")
    return groups


class AdamW(_C.optim.AdamW):
    """AdamW over a module's parameters or a list of ParamGroups."""

    def __init__(self, params, *, weight_decay: float = 0.0, beta1: float = 0.9, beta2: float = 0.95,
                 eps: float = 1e-8):
        super().__init__(_groups(params, weight_decay), beta1=beta1, beta2=beta2, eps=eps)


class SGD(_C.optim.SGD):
    """SGD with momentum over a module's parameters or a list of ParamGroups."""

    def __init__(self, params, *, weight_decay: float = 0.0, momentum: float = 0.9):
        super().__init__(_groups(params, weight_decay), momentum=momentum)
