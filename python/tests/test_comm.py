"""Communication from one process: stores, every collective on NumPy arrays
in place, Work handles with wait(timeout=), the environment, and the errors.
(Several ranks: test_multirank.py.)"""
import os
import threading

import numpy as np
import pytest

import dtrain
from dtrain import run as dtrain_run


@pytest.fixture
def comm(tmp_path):
    c = dtrain.Communicator(dtrain.FileStore(str(tmp_path / "store")), 0, 1, timeout=20)
    yield c
    del c


def test_collectives_on_numpy_in_place(comm):
    assert comm.rank == 0 and comm.size == 1 and comm.error == "" and "size=1" in repr(comm)
    x = np.arange(6, dtype=np.float32)
    w = comm.all_reduce(x, "sum")
    w.wait()
    assert w.is_completed() and w.op == "all_reduce" and w.sequence >= 1 and "all_reduce" in repr(w)
    np.testing.assert_array_equal(x, np.arange(6))
    comm.all_reduce(x, dtrain.ReduceOp.max).wait()
    out = np.zeros(6, np.float32)
    comm.all_reduce(x, op="avg", output=out).wait()
    np.testing.assert_array_equal(out, x)
    ints = np.array([1, 2, 3], np.int64)
    comm.all_reduce(ints, "product").wait(timeout=10)
    comm.all_reduce_coalesced([x, np.ones(2, np.float32)]).wait()
    rs_out = np.zeros(6, np.float32)
    comm.reduce_scatter(x, rs_out).wait()
    np.testing.assert_array_equal(rs_out, x)
    ag_out = np.zeros(6, np.float32)
    comm.all_gather(x, ag_out).wait()
    np.testing.assert_array_equal(ag_out, x)
    comm.broadcast(x, root=0).wait()
    a2a = np.zeros(6, np.float32)
    comm.all_to_all(x, a2a).wait()
    np.testing.assert_array_equal(a2a, x)
    comm.barrier().wait()
    assert comm.sequence_number >= 9


def test_collectives_on_dtrain_tensors(comm):
    t = dtrain.full((4,), 2.0)
    comm.all_reduce(t).wait()
    assert t.tolist() == [2.0] * 4


def test_collective_errors(comm):
    with pytest.raises(dtrain.DtrainValueError, match="unknown reduce op"):
        comm.all_reduce(np.zeros(2, np.float32), "mean")
    with pytest.raises(dtrain.DtrainTypeError, match="unsupported dtype"):
        comm.all_reduce(np.zeros(2, np.float64))
    with pytest.raises(dtrain.DtrainValueError, match="not C-contiguous"):
        comm.all_reduce(np.zeros((3, 3), np.float32)[:, 0])
    ro = np.zeros(2, np.float32)
    ro.setflags(write=False)
    with pytest.raises(dtrain.DtrainValueError, match="read-only"):
        comm.all_reduce(ro)
    with pytest.raises(dtrain.DtrainTypeError):
        comm.all_reduce([1.0, 2.0])
    with pytest.raises(dtrain.DtrainError):
        comm.all_gather(np.zeros(2, np.float32), np.zeros(3, np.float32)).wait()
    with pytest.raises(dtrain.DtrainValueError):
        comm.barrier().wait(timeout=-1)


def two_ranks_in_threads(path):
    """Rank 0 and rank 1 of one job, built concurrently in two threads of this process."""
    store_dir = str(path / "pair")
    comms = [None, None]

    def build(rank):
        comms[rank] = dtrain.Communicator(dtrain.FileStore(store_dir, timeout=20), rank, 2, timeout=20)

    threads = [threading.Thread(target=build, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return comms


def test_wait_timeout_raises_timeout_error(tmp_path):
    c0, c1 = two_ranks_in_threads(tmp_path)
    got = np.zeros(2, np.float32)
    pending = c0.recv(got, src=1, tag=7)  # nobody has sent yet
    with pytest.raises(dtrain.DtrainTimeoutError, match="did not finish within"):
        pending.wait(timeout=0.2)
    with pytest.raises(TimeoutError):
        pending.wait(timeout=0)
    assert not pending.is_completed()
    c1.send(np.full(2, 4.0, np.float32), dst=0, tag=7).wait(timeout=10)
    pending.wait(timeout=10)
    assert got.tolist() == [4.0, 4.0]


def test_store(tmp_path):
    store = dtrain.FileStore(str(tmp_path / "kv"), timeout=5)
    store.set("a", b"hello")
    assert store.get("a") == b"hello"
    assert store.add("n", 2) == 2 and store.add("n", 3) == 5
    assert store.check(["a", "n"]) and not store.check(["missing"])
    assert store.delete_key("a") and not store.check(["a"])
    short = dtrain.FileStore(str(tmp_path / "kv"), timeout=0.2)
    with pytest.raises(dtrain.DtrainError, match="missing"):
        short.get("missing")


def test_process_group_single_process(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "DTRAIN_AUTH_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    assert not dtrain.is_initialized()
    with dtrain.process_group(timeout=20) as comm:
        assert dtrain.is_initialized() and dtrain.world().size == 1 and comm.timeout == 20
        x = np.ones(3, np.float32)
        comm.all_reduce(x).wait()
    assert not dtrain.is_initialized()
    with pytest.raises(dtrain.DtrainError):
        dtrain.world()
    dtrain.destroy_process_group()  # no-op when none


def test_job_env_reads_the_launcher_environment(monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "1234")
    env = dtrain.job_env()
    assert env == {"rank": 3, "world_size": 8, "local_rank": 1, "local_world_size": 2,
                   "master_addr": "10.0.0.1", "master_port": 1234, "source": "torchrun"}
    monkeypatch.setenv("WORLD_SIZE", "zero")
    with pytest.raises(dtrain.DtrainError):
        dtrain.job_env()
    monkeypatch.setenv("DTRAIN_TIMEOUT_S", "2.5")
    assert dtrain.timeout_from_environment() == 2.5


def test_run_builds_the_launcher_command():
    py = "/usr/bin/python3"
    assert dtrain_run.build_command(["--nproc_per_node", "2", "train.py", "--steps", "3"], py) == [
        "--nproc-per-node", "2", py, "train.py", "--steps", "3"]
    assert dtrain_run.build_command(["--nproc-per-node=4", "-m", "pkg.mod", "-x"], py) == [
        "--nproc-per-node=4", py, "-m", "pkg.mod", "-x"]
    assert dtrain_run.build_command(["--nproc-per-node", "1", "/bin/echo", "hi"], py) == [
        "--nproc-per-node", "1", "/bin/echo", "hi"]
    assert os.access(dtrain_run.launcher_path(), os.X_OK)
