"""dtrain.parallel: the data-parallel engine (ZeRO stages 0-3) and the memory ledger.

    engine = dtrain.parallel.DataParallel(model, comm, stage=1, grad_accumulation=2)
    opt = dtrain.optim.AdamW(engine.param_groups(0.1))
    for micro in range(2):
        with engine.no_sync() if micro < 1 else contextlib.nullcontext():
            model(x, y, grad_scale=engine.grad_scale)
            model.backward()
    engine.step(opt, lr, max_grad_norm=1.0)
"""
from __future__ import annotations

import contextlib
import weakref
from typing import Iterator

from . import _C
from ._C.parallel import (  # noqa: F401
    GroupInfo,
    MemoryLedger,
    Precision,
    StepResult,
    format_ledger,
    predict_model_state,
)


class DataParallel(_C.parallel.DataParallel):
    """The engine hangs its collectives on the model's hooks; the model code is unchanged.

    With grad_accumulation = N the engine communicates on the N-th backward
    pass after a step and accumulates locally before it (stages 0-1).
    no_sync() marks the local passes in the training loop and checks that none
    of them is the communicating one.
    """

    def __init__(self, model, communicator, **options):
        super().__init__(model, communicator, **options)
        self.communicator = communicator  # what dtrain.checkpoint's collectives run on
        self._backwards = 0
        self._model = model
        # A weak reference: the model's hook must not keep the engine alive.
        this = weakref.ref(self)
        self._hook = model.add_hook(_C.nn.HookPoint.post_backward, lambda _m: DataParallel._count_backward(this))

    @staticmethod
    def _count_backward(this) -> None:
        engine = this()
        if engine is not None:
            engine._backwards += 1

    def __del__(self):
        model = getattr(self, "_model", None)
        if model is not None:
            model.remove_hook(self._hook)

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Backward passes inside accumulate without communication. The engine
        communicates on the grad_accumulation-th pass, which must run outside."""
        if self.grad_accumulation == 1:
            raise _C.DtrainValueError(
                "no_sync() needs grad_accumulation > 1: with one pass per step every backward communicates")
        yield
        if self._backwards % self.grad_accumulation == 0 and self._backwards > 0:
            raise _C.DtrainError(
                f"backward pass {self._backwards} ran inside no_sync() but is the communicating one "
                f"(grad_accumulation = {self.grad_accumulation}); run the last micro-step outside no_sync()")

    def step(self, optimizer, lr: float, max_grad_norm: float = 0.0) -> StepResult:
        """Clip, update, re-gather and zero the gradients (after grad_accumulation backward passes)."""
        result = super().step(optimizer, lr, max_grad_norm)
        self._backwards = 0
        return result

    def __repr__(self) -> str:
        return (f"dtrain.parallel.DataParallel(stage={self.stage}, rank={self.rank}, world_size={self.world_size}, "
                f"grad_accumulation={self.grad_accumulation}, parameters={self.num_parameters})")
