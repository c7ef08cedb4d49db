"""Joining a job from Python: init_process_group() and the process_group()
context manager.

The environment is read by the C++ library exactly as for C++ programs
(dtrain-run / torchrun, Slurm, Open MPI; none: one process), so a script runs
unchanged under `python -m dtrain.run`, torchrun, srun or mpirun.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Iterator, Optional

from . import _C

# A single process with no launcher and no job secret rendezvouses through a
# private file store (as train_gpt does), removed again by destroy_process_group.
_private_store_dir: Optional[str] = None


def init_process_group(*, rank: Optional[int] = None, world_size: Optional[int] = None,
                       local_rank: Optional[int] = None, master_addr: Optional[str] = None,
                       master_port: Optional[int] = None, auth_token: str = "", file_store_path: str = "",
                       timeout: Optional[float] = None) -> _C.Communicator:
    """Creates the store (rank 0 hosts it) and the world communicator, and keeps
    it as the process default (dtrain.world()). Keyword arguments override the
    environment; timeout is in seconds (default DTRAIN_TIMEOUT_S, 300).

    A single process started without a launcher (world size 1, no
    DTRAIN_AUTH_TOKEN) gets a private file store, so scripts also run alone."""
    global _private_store_dir
    if (not file_store_path and not auth_token and "DTRAIN_AUTH_TOKEN" not in os.environ
            and (world_size if world_size is not None else _C.job_env()["world_size"]) == 1):
        _private_store_dir = file_store_path = tempfile.mkdtemp(prefix="dtrain_store_")
    return _C.init_process_group(rank=rank, world_size=world_size, local_rank=local_rank,
                                 master_addr=master_addr, master_port=master_port, auth_token=auth_token,
                                 file_store_path=file_store_path, timeout=timeout)


def destroy_process_group() -> None:
    """Drops the default communicator (bounded teardown; no-op when none)."""
    global _private_store_dir
    if _C.is_initialized():
        _C.destroy_process_group()
    if _private_store_dir is not None:
        shutil.rmtree(_private_store_dir, ignore_errors=True)
        _private_store_dir = None


@contextlib.contextmanager
def process_group(**kwargs) -> Iterator[_C.Communicator]:
    """`with dtrain.process_group() as comm:` joins the job and leaves it on exit,
    also when the body raises. Takes init_process_group's keyword arguments."""
    comm = init_process_group(**kwargs)
    try:
        yield comm
    finally:
        del comm
        destroy_process_group()
