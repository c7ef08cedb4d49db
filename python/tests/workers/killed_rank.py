"""Worker: the last rank dies (SIGKILL) after one good collective; the
survivors report the failure as a Python exception, print it, and exit 0.
They ignore the launcher's SIGTERM long enough to see the error."""
import os
import signal

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
    os._exit(0)
