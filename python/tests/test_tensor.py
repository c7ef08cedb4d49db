"""dtrain.Tensor: construction, dtype/device mapping, NumPy views sharing
memory both ways, and the errors bad arrays raise."""
import gc

import numpy as np
import pytest

import dtrain

NUMPY_DTYPES = [(np.float32, dtrain.f32), (np.float16, dtrain.f16), (np.int32, dtrain.i32),
                (np.int64, dtrain.i64), (np.uint8, dtrain.u8), (np.uint16, dtrain.u16)]


@pytest.mark.parametrize("np_dtype,dt", NUMPY_DTYPES)
def test_from_numpy_shares_memory_both_ways(np_dtype, dt, rng):
    shape = tuple(rng.integers(1, 6, size=rng.integers(1, 4)))
    a = rng.integers(0, 100, size=shape).astype(np_dtype)
    t = dtrain.from_numpy(a)
    assert t.shape == shape and t.dtype == dt and t.device == "cpu"
    assert t.data_ptr == a.ctypes.data
    view = np.asarray(t)  # buffer protocol
    assert view.dtype == a.dtype and np.shares_memory(view, a)
    a.flat[0] = 7
    assert t.numpy().flat[0] == 7
    t.numpy().flat[-1] = 9
    assert a.flat[-1] == 9


def test_tensor_keeps_array_alive():
    a = np.arange(10, dtype=np.float32)
    t = dtrain.from_numpy(a)
    del a
    gc.collect()
    np.testing.assert_array_equal(t.numpy(), np.arange(10, dtype=np.float32))


def test_numpy_view_keeps_tensor_alive():
    view = dtrain.full((3,), 2.5).numpy()
    gc.collect()
    np.testing.assert_array_equal(view, [2.5, 2.5, 2.5])


def test_factories_and_properties():
    t = dtrain.zeros((2, 3), dtype="int32")
    assert t.shape == (2, 3) and t.dtype == dtrain.i32 and t.numel == 6 and t.nbytes == 24 and t.ndim == 2
    assert len(t) == 2 and t.is_cpu and not t.is_cuda and t.defined
    assert dtrain.full(4, 1.5).tolist() == [1.5] * 4
    assert dtrain.empty((0,)).numel == 0
    assert dtrain.dtype("float32") == dtrain.f32 and dtrain.dtype(np.int64) == dtrain.i64
    assert dtrain.dtype("bfloat16") == dtrain.bf16 and dtrain.bf16.itemsize == 2
    assert str(dtrain.Device("cuda:1")) == "cuda:1" and dtrain.Device("cpu").is_cpu


def test_repr_shows_shape_dtype_device():
    r = repr(dtrain.zeros((2, 3)))
    assert "shape=(2, 3)" in r and "f32" in r and "cpu" in r
    assert repr(dtrain.Device("cpu")) == "dtrain.Device('cpu')"


def test_views_share_storage():
    t = dtrain.tensor(np.arange(12, dtype=np.float32))
    r = t.reshape(3, 4)
    n = r.narrow(1, 2)
    assert n.shape == (2, 4) and n.shares_memory(t)
    n.fill_(-1)
    assert t.tolist()[4:12] == [-1.0] * 8
    assert t.reshape((-1, 2)).shape == (6, 2) and r.flatten().shape == (12,)


def test_tensor_copies():
    a = np.arange(4, dtype=np.float64)
    t = dtrain.tensor(a)
    assert t.dtype == dtrain.f32  # float64 has no dtrain dtype: f32, like torch
    a[0] = 100
    assert t.tolist()[0] == 0
    assert dtrain.tensor([[1, 2]], dtype="i32").dtype == dtrain.i32
    c = t.clone()
    assert not c.shares_memory(t)
    c.copy_(np.full(4, 3, np.float32))
    assert c.tolist() == [3.0] * 4 and t.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert dtrain.full((1,), 4.0).item() == 4.0
    assert dtrain.tensor(np.array([1.0, 2.0], np.float32)).to("cpu").tolist() == [1.0, 2.0]


def test_array_protocol():
    t = dtrain.full((2,), 3.0)
    a = np.array(t, dtype=np.float64)
    assert a.dtype == np.float64 and a.tolist() == [3.0, 3.0]


def test_non_contiguous_array_is_a_value_error():
    a = np.zeros((4, 6), np.float32)
    with pytest.raises(dtrain.DtrainValueError, match="not C-contiguous"):
        dtrain.from_numpy(a.T)
    with pytest.raises(ValueError):
        dtrain.from_numpy(a[:, ::2])


def test_unsupported_dtype_is_a_type_error():
    with pytest.raises(dtrain.DtrainTypeError, match="unsupported dtype"):
        dtrain.from_numpy(np.zeros(3, np.float64))
    with pytest.raises(TypeError):
        dtrain.from_numpy(np.zeros(3, np.complex64))
    with pytest.raises(dtrain.DtrainTypeError):
        dtrain.as_tensor("not an array")
    with pytest.raises(TypeError):
        dtrain.dtype("float128")


def test_bf16_has_no_numpy_view():
    t = dtrain.zeros((2,), dtype="bf16")
    with pytest.raises(dtrain.DtrainTypeError, match="bf16"):
        t.numpy()


def test_bad_device_is_a_value_error():
    with pytest.raises(dtrain.DtrainValueError, match="cannot parse device"):
        dtrain.zeros((2,), device="tpu")
    with pytest.raises(dtrain.DtrainTypeError):
        dtrain.zeros((2,), device=3)


@pytest.mark.skipif(dtrain.cuda_is_available(), reason="checks the error raised without a usable GPU")
def test_cuda_without_gpu_raises_dtrain_error():
    with pytest.raises(dtrain.DtrainError, match="cuda"):
        dtrain.zeros((2,), device="cuda")


def test_errors_are_runtime_errors():
    assert issubclass(dtrain.DtrainError, RuntimeError)
    assert issubclass(dtrain.DtrainValueError, ValueError) and issubclass(dtrain.DtrainValueError, dtrain.DtrainError)
    assert issubclass(dtrain.DtrainTypeError, TypeError) and issubclass(dtrain.DtrainTypeError, dtrain.DtrainError)
    assert issubclass(dtrain.DtrainTimeoutError, TimeoutError)


def test_memory_stats_track_allocations():
    dtrain.reset_peak_memory("cpu")
    before = dtrain.memory_stats()
    t = dtrain.empty((1024, 1024))
    during = dtrain.memory_stats("cpu")
    assert during["current_bytes"] - before["current_bytes"] >= 4 << 20
    assert during["peak_bytes"] >= during["current_bytes"]
    assert during["total_allocations"] > before["total_allocations"]
    del t
    assert dtrain.memory_stats()["current_bytes"] == before["current_bytes"]
    dtrain.empty_cache("cpu")
    dtrain.synchronize("cpu")


def test_numpy_arrays_do_not_count_as_allocations():
    before = dtrain.memory_stats()["current_bytes"]
    t = dtrain.from_numpy(np.zeros(1 << 20, np.float32))
    assert dtrain.memory_stats()["current_bytes"] == before
    del t
