"""dtrain: a distributed training runtime (C++/CUDA) for Python.

Tensors share memory with NumPy (buffer protocol) and with PyTorch, CuPy and
JAX (DLPack) without copies; collectives run on any of those arrays in place;
models (f32, bf16 or f16), optimizers, the data loader, the data-parallel engine
and sharded checkpoints (dtrain.checkpoint) are dtrain's C++ objects, driven
from Python. See docs/python.md.

    import dtrain, numpy as np
    with dtrain.process_group() as comm:          # environment of dtrain-run / torchrun / srun
        x = np.ones(4, np.float32)
        comm.all_reduce(x).wait()                 # x now holds the sum over ranks
"""
from __future__ import annotations

from . import _C  # noqa: F401  (the extension; dtrain._C.* for the raw bindings)
from ._C import (
    Communicator,
    Device,
    DType,
    DtrainError,
    DtrainTimeoutError,
    DtrainTypeError,
    DtrainValueError,
    FileStore,
    ReduceOp,
    Store,
    Tensor,
    Work,
    as_tensor,
    cuda_compiled,
    cuda_device_count,
    dtype,
    empty,
    empty_cache,
    from_dlpack,
    from_numpy,
    full,
    is_initialized,
    job_env,
    memory_stats,
    reset_peak_memory,
    synchronize,
    timeout_from_environment,
    world,
    zeros,
)
from . import checkpoint, data, nn, ops, optim, parallel
from .distributed import destroy_process_group, init_process_group, process_group
from .tensor import tensor

__version__ = "0.1.0"

f32 = float32 = DType.f32
bf16 = bfloat16 = DType.bf16
f16 = float16 = DType.f16
i32 = int32 = DType.i32
i64 = int64 = DType.i64
u8 = uint8 = DType.u8
u16 = uint16 = DType.u16


def cuda_is_available() -> bool:
    """True when dtrain was built with CUDA and a GPU is usable."""
    return cuda_device_count() > 0


__all__ = [
    "Communicator", "Device", "DType", "DtrainError", "DtrainTimeoutError", "DtrainTypeError",
    "DtrainValueError", "FileStore", "ReduceOp", "Store", "Tensor", "Work", "as_tensor", "cuda_compiled",
    "checkpoint", "cuda_device_count", "cuda_is_available", "data", "destroy_process_group", "dtype", "empty",
    "empty_cache", "from_dlpack", "from_numpy", "full", "init_process_group", "is_initialized", "job_env",
    "memory_stats", "nn", "ops", "optim", "parallel", "process_group", "reset_peak_memory", "synchronize",
    "tensor", "timeout_from_environment", "world", "zeros",
]
