"""dtrain.checkpoint: sharded checkpoints of a model trained through the
data-parallel engine (any ZeRO stage, any world size, f32/bf16/f16).

    ckpt = "runs/ckpt"
    dtrain.checkpoint.save(ckpt, model, opt, engine, step=step, data=loader.position)
    ...
    # a fresh process: same model config, engine options and optimizer
    meta = dtrain.checkpoint.resume(ckpt, model, opt, engine, loader=loader)
    step = meta.step

A checkpoint is a directory per save (root/step-00000020/: a manifest and one
safetensors file per rank, each with a checksum); `latest` names the newest
complete one. Saves are atomic: an interrupted save leaves the previous one
loadable. A damaged file raises dtrain.DtrainError naming it, before anything
is loaded. The format is the C++ library's (docs/checkpoint.md), so
train_gpt and `dtrain-ckpt` read these checkpoints and the reverse.
"""
from __future__ import annotations

import os
import warnings

from . import _C
from ._C.checkpoint import Meta, PendingSave, Reader, find_latest  # noqa: F401


def _communicator(engine):
    # dtrain.parallel.DataParallel keeps its communicator; a raw _C engine has none (single process).
    return getattr(engine, "communicator", None)


def save(root: str | os.PathLike, model, optimizer, engine, *, step: int, data=None, hyper=None, seed: int = 0,
         keep_last: int = 0, key: str | None = None) -> str:
    """Collective (every rank calls it): writes root/step-<step> and returns its path.

    Saves the f32 master weights and optimizer moments this rank owns (the
    optimizer must be built over engine.param_groups(...)), the optimizer's
    step counter, the engine's precision and, under f16, its loss scaler.
    data: a dtrain.data.LoaderPosition to restore with the checkpoint; hyper:
    numbers to record (lr, ...); keep_last > 0 deletes all but the newest
    keep_last checkpoints; key: 64 hex digits to encrypt every file.
    """
    pending = _C.checkpoint.save_async(os.fspath(root), model, optimizer, engine, _communicator(engine), step=step,
                                       data=data, hyper=dict(hyper or {}), seed=seed, keep_last=keep_last, key=key,
                                       background=False)
    return pending.finish()


def save_async(root: str | os.PathLike, model, optimizer, engine, *, step: int, data=None, hyper=None,
               seed: int = 0, keep_last: int = 0, key: str | None = None) -> PendingSave:
    """save() overlapping training: copies this rank's state to host memory,
    writes it on a background thread and returns at once. Call finish() on the
    result (collectively, at the same point on every rank) to publish it."""
    return _C.checkpoint.save_async(os.fspath(root), model, optimizer, engine, _communicator(engine), step=step,
                                    data=data, hyper=dict(hyper or {}), seed=seed, keep_last=keep_last, key=key)


def open_checkpoint(path: str | os.PathLike, key: str | None = None) -> Reader:
    """A Reader of `path`: a checkpoint directory, or a root holding step-N
    checkpoints (its newest complete one is opened)."""
    path = os.fspath(path)
    if not os.path.exists(os.path.join(path, "manifest.json")):
        latest = find_latest(path)
        if latest is None:
            raise _C.DtrainError(f"no complete checkpoint in {path}: save one first, or pass a step-N directory")
        path = latest
    return Reader(path, key)


def resume(path: str | os.PathLike | Reader, model, optimizer, engine, *, loader=None, key: str | None = None) -> Meta:
    """Collective: continues a run from a checkpoint (a directory, a root
    whose latest one is used, or a Reader) into a model, an optimizer over
    engine.param_groups(...) and its engine, built as for the saved run.

    Loads this rank's master weights and moments, derives the parameters from
    them, restores the optimizer's step counter and the f16 loss scaler, and
    sets loader's position when one is given. The saving world size and ZeRO
    stage may differ from this run's; so may the precision (a warning says
    what the change does). Returns the checkpoint's Meta
    (meta.step: the steps done).
    """
    reader = path if isinstance(path, Reader) else open_checkpoint(path, key)
    note = _C.checkpoint.resume(reader, model, optimizer, engine)
    if loader is not None:
        loader.position = reader.meta.data
    if note:
        warnings.warn(note, stacklevel=2)
    return reader.meta


__all__ = ["Meta", "PendingSave", "Reader", "find_latest", "open_checkpoint", "resume", "save", "save_async"]
