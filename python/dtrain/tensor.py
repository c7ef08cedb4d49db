"""dtrain.tensor(): a new tensor holding a copy of any array-like.

The zero-copy ways in are dtrain.from_numpy, dtrain.from_dlpack and
dtrain.as_tensor; this one always copies, converts the dtype and places the
result on a device, like torch.tensor.
"""
from __future__ import annotations

import numpy as np

from . import _C


def tensor(data, dtype=None, device="cpu") -> _C.Tensor:
    """A new tensor with a copy of `data` (nested lists, NumPy, DLPack arrays).

    dtype: a dtrain.DType or name ('f32', 'float32', 'int32', ...); by default
    float data becomes f32 and integer data i64 (NumPy's), as NumPy infers.
    """
    if isinstance(data, _C.Tensor) or (hasattr(data, "__dlpack__") and not isinstance(data, np.ndarray)):
        src = data if isinstance(data, _C.Tensor) else _C.from_dlpack(data)
        target = src.dtype if dtype is None else _C.dtype(dtype)
        if target != src.dtype:
            raise _C.DtrainTypeError(
                f"dtrain.tensor: converting {src.dtype.name} to {target.name} needs NumPy; pass a NumPy array")
        out = _C.empty(src.shape, target, device)
        out.copy_(src)
        return out
    array = np.asarray(data)
    if dtype is not None:
        target = _C.dtype(dtype)
        if target == _C.DType.bf16:
            raise _C.DtrainTypeError("dtrain.tensor: NumPy has no bf16; make an f32 tensor, then dtrain.ops.cast")
        array = array.astype(np.dtype(_NUMPY_NAMES[target]))
    elif array.dtype == np.float64:
        array = array.astype(np.float32)
    array = np.ascontiguousarray(array)
    src = _C.from_numpy(array)
    out = _C.empty(src.shape, src.dtype, device)
    out.copy_(src)
    return out


_NUMPY_NAMES = {
    _C.DType.f32: "float32",
    _C.DType.f16: "float16",
    _C.DType.i32: "int32",
    _C.DType.i64: "int64",
    _C.DType.u8: "uint8",
    _C.DType.u16: "uint16",
}
