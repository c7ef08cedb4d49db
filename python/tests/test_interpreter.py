"""The interpreter around long calls: the GIL is released (other Python
threads run during a collective wait and a training step), and Ctrl-C
interrupts a long wait at once with KeyboardInterrupt."""
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np

import dtrain


def test_other_threads_run_during_a_wait(tmp_path):
    c = [None, None]

    def build(rank):
        c[rank] = dtrain.Communicator(dtrain.FileStore(str(tmp_path / "s"), timeout=20), rank, 2, timeout=20)

    threads = [threading.Thread(target=build, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = np.zeros(1, np.float32)
    pending = c[0].recv(got, src=1)
    ticks = []

    def ticker():
        for _ in range(5):
            ticks.append(time.monotonic())
            time.sleep(0.02)
        c[1].send(np.ones(1, np.float32), dst=0).wait()

    t = threading.Thread(target=ticker)
    t.start()
    pending.wait(timeout=20)  # the ticker can only send if this wait lets it run
    t.join()
    assert len(ticks) == 5 and got[0] == 1.0


def test_other_threads_run_during_forward_backward():
    model = dtrain.nn.gpt("tiny", n_layer=2)
    x = np.zeros((4, 32), np.int32)
    counter = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            counter[0] += 1

    t = threading.Thread(target=spin)
    t.start()
    time.sleep(0.01)
    before = counter[0]
    for _ in range(3):
        model(x, x)
        model.backward()
    during = counter[0] - before
    stop.set()
    t.join()
    assert during > 1000, during  # the spinner kept running while C++ computed


def test_ctrl_c_interrupts_a_wait(tmp_path):
    script = textwrap.dedent(f"""
        import signal, sys, threading, time, numpy as np, dtrain
        # A process started in the background by a non-interactive shell (as
        # CI runners may start the suite) inherits SIGINT ignored, and Python
        # then installs no KeyboardInterrupt handler: restore it explicitly.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        c = [None, None]
        def build(r):
            c[r] = dtrain.Communicator(dtrain.FileStore({str(tmp_path / 's')!r}), r, 2, timeout=120)
        ts = [threading.Thread(target=build, args=(r,)) for r in (0, 1)]
        [t.start() for t in ts]; [t.join() for t in ts]
        w = c[0].recv(np.zeros(1, np.float32), src=1)
        print("waiting", flush=True)
        start = time.monotonic()
        try:
            w.wait()
        except KeyboardInterrupt:
            print(f"interrupted after {{time.monotonic() - start:.2f}} s", flush=True)
            c[1].send(np.ones(1, np.float32), dst=0).wait()  # let the pending recv finish
            w.wait(timeout=20)
            sys.exit(0)
        sys.exit(3)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "waiting"
    time.sleep(0.3)
    sent = time.monotonic()
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    assert "interrupted after" in out
    assert time.monotonic() - sent < 10
