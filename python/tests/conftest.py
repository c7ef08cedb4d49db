"""Shared pieces of the Python test suite.

The suite runs against the installed package (scripts/test_python.sh installs
it into a fresh virtual environment), never the source tree: this folder has
no dtrain package of its own. Multi-rank tests start real processes through
`python -m dtrain.run`.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

WORKERS = Path(__file__).resolve().parent / "workers"


@pytest.fixture
def rng(request):
    """A generator seeded from the test's name: reproducible, different per test."""
    seed = sum(ord(c) for c in request.node.name) * 7919
    return np.random.default_rng(seed)


def launch(nproc: int, worker: str, *args: str, timeout: float = 120.0, env: dict | None = None,
           grace_s: float = 2.0):
    """Runs workers/<worker> on `nproc` ranks through python -m dtrain.run; returns the CompletedProcess."""
    full_env = dict(os.environ)
    full_env.setdefault("DTRAIN_TIMEOUT_S", "30")
    full_env["OMP_NUM_THREADS"] = "1"
    if env:
        full_env.update(env)
    cmd = [sys.executable, "-m", "dtrain.run", "--nproc-per-node", str(nproc), "--grace-s", str(grace_s),
           str(WORKERS / worker), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env)


def assert_close(actual, expected, rtol=1e-5, atol=1e-6, what=""):
    """np.testing.assert_allclose with NaN never equal to NaN, and every value finite."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert np.isfinite(actual).all(), f"{what}: non-finite values in the result"
    assert np.isfinite(expected).all(), f"{what}: non-finite values in the reference"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=False, err_msg=what)


def pytest_report_header(config):
    import dtrain

    return f"dtrain {dtrain.__version__} from {Path(dtrain.__file__).parent} (CUDA built: {dtrain.cuda_compiled()})"
