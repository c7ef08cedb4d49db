"""Worker: the last rank dies (SIGKILL) after one good collective; the
survivors report the failure as a Python exception, print it, and exit 0.
They ignore the launcher's SIGTERM long enough to see the error, and rank 0,
which hosts the store the others use to name the dead rank, stays up a moment
longer than they need."""
import os
import signal
import time

import numpy as np

import dtrain

signal.signal(signal.SIGTERM, lambda *_: None)
comm = dtrain.init_process_group()
x = np.ones(4, np.float32)
comm.all_reduce(x).wait()
if comm.rank == comm.size - 1:
    os.kill(os.getpid(), signal.SIGKILL)
try:
    for _ in range(100):
        comm.all_reduce(x).wait(timeout=60)
    print("no error", flush=True)
except dtrain.DtrainError as e:
    print(f"caught {type(e).__name__}: {e}", flush=True)
    if comm.rank == 0:
        time.sleep(3)
    os._exit(0)
