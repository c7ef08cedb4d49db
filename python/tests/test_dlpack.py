"""DLPack both ways: NumPy always; PyTorch (CPU, and CUDA when a GPU is
there) when it is importable, skipped with the reason otherwise."""
import numpy as np
import pytest

import dtrain

try:
    import torch
except ImportError:  # pragma: no cover - depends on the machine
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed in this environment")
needs_cuda = pytest.mark.skipif(not dtrain.cuda_is_available() or torch is None or not torch.cuda.is_available(),
                                reason="needs a dtrain CUDA build, a GPU and PyTorch with CUDA")


def test_dlpack_device():
    assert dtrain.zeros((2,)).__dlpack_device__() == (1, 0)


def test_numpy_from_dtrain_shares_memory(rng):
    t = dtrain.tensor(rng.standard_normal((3, 5)).astype(np.float32))
    a = np.from_dlpack(t)
    assert a.shape == (3, 5) and a.dtype == np.float32 and a.flags.writeable
    a[1, 2] = 42.0
    assert t.numpy()[1, 2] == 42.0
    assert a.ctypes.data == t.data_ptr


def test_dtrain_from_numpy_dlpack_shares_memory(rng):
    a = rng.integers(0, 9, size=(4, 2, 3)).astype(np.int64)
    t = dtrain.from_dlpack(a)
    assert t.shape == (4, 2, 3) and t.dtype == dtrain.i64 and t.data_ptr == a.ctypes.data
    t.fill_(5)
    assert (a == 5).all()


def test_round_trip_through_capsules():
    t = dtrain.full((6,), 1.0)
    back = dtrain.from_dlpack(t.__dlpack__())
    assert back.shares_memory(t)
    capsule = t.__dlpack__(max_version=(1, 0))
    dtrain.from_dlpack(capsule)
    with pytest.raises(dtrain.DtrainValueError, match="consumed only once"):
        dtrain.from_dlpack(capsule)


def test_strided_producer_is_refused():
    a = np.zeros((4, 4), np.float32)
    with pytest.raises(dtrain.DtrainValueError, match="not C-contiguous"):
        dtrain.from_dlpack(a[:, 1:3])


def test_unsupported_dlpack_dtype_is_a_type_error():
    with pytest.raises(dtrain.DtrainTypeError, match="unsupported dtype"):
        dtrain.from_dlpack(np.zeros(3, np.complex64))


def test_copy_request_is_refused():
    with pytest.raises(dtrain.DtrainValueError, match="copy"):
        dtrain.zeros((1,)).__dlpack__(copy=True)


def test_exported_capsule_outlives_the_tensor():
    capsule = dtrain.full((3,), 2.0).__dlpack__()
    a = np.from_dlpack(type("Holder", (), {"__dlpack__": lambda self, **k: capsule,
                                           "__dlpack_device__": lambda self: (1, 0)})())
    assert a.tolist() == [2.0, 2.0, 2.0]


@needs_torch
def test_torch_cpu_round_trip():
    x = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    t = dtrain.from_dlpack(x)
    assert t.shape == (3, 4) and t.data_ptr == x.data_ptr()
    t.fill_(1.0)
    assert bool((x == 1).all())
    y = torch.from_dlpack(dtrain.zeros((2, 2), dtype="bf16"))
    assert y.dtype == torch.bfloat16 and y.shape == (2, 2)
    with pytest.raises(dtrain.DtrainValueError):
        dtrain.from_dlpack(x.t())


@needs_torch
def test_collective_on_torch_tensor_in_place():
    with dtrain.process_group() as comm:
        x = torch.full((5,), 3.0)
        comm.all_reduce(x).wait()
        assert x.tolist() == [3.0] * 5


@needs_cuda
def test_torch_cuda_round_trip():
    x = torch.arange(8, dtype=torch.float32, device="cuda")
    t = dtrain.from_dlpack(x)
    assert t.device == "cuda:0" and t.data_ptr == x.data_ptr()
    t.fill_(2.0)
    dtrain.synchronize("cuda")
    assert x.cpu().tolist() == [2.0] * 8
    u = dtrain.full((4,), 5.0, device="cuda")
    y = torch.from_dlpack(u)
    assert y.is_cuda and y.sum().item() == 20.0
