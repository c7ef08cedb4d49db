"""2 and 4 ranks through `python -m dtrain.run`: collectives on NumPy
arrays, a short data-parallel run matching single-process training, and a
killed rank reported by the survivors as a Python exception naming it."""
import sys

import numpy as np
import pytest

from conftest import WORKERS, assert_close, launch

sys.path.insert(0, str(WORKERS))
import dp_common  # noqa: E402


def check(proc, nproc, marker):
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    for r in range(nproc):
        assert f"[rank {r}] {marker}" in out, out


@pytest.mark.parametrize("nproc", [2, 4])
def test_collectives_on_numpy(nproc):
    check(launch(nproc, "collectives.py"), nproc, "collectives ok")


@pytest.fixture(scope="module")
def reference():
    return dp_common.train_single_process()


@pytest.mark.parametrize("nproc,stage", [(2, 0), (4, 3)])
def test_data_parallel_matches_single_process(nproc, stage, reference, tmp_path):
    out = tmp_path / "dp.npz"
    check(launch(nproc, "train_dp.py", str(out), str(stage)), nproc, "trained")
    got = np.load(out)
    ref_losses, ref_params = reference
    assert_close(got["losses"], ref_losses, rtol=1e-4, atol=1e-5, what="losses")
    assert ref_losses[-1] < ref_losses[0]
    for name, value in ref_params.items():
        assert_close(got[name], value, rtol=1e-3, atol=1e-5, what=name)


@pytest.mark.parametrize("nproc", [2, 4])
def test_killed_rank_is_reported_by_survivors(nproc):
    proc = launch(nproc, "killed_rank.py", env={"DTRAIN_TIMEOUT_S": "30"}, grace_s=10)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out  # the launcher reports the killed rank
    dead = nproc - 1
    for r in range(dead):
        lines = [line for line in out.splitlines() if line.startswith(f"[rank {r}] caught")]
        assert lines, out
        assert "DtrainError" in lines[0] and f"rank {dead}" in lines[0], lines[0]
