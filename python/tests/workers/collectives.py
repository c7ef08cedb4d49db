"""Worker: every collective on NumPy arrays, each rank checking its result
against the value computed here by hand. Prints 'collectives ok' on success."""
import numpy as np

import dtrain

with dtrain.process_group() as comm:
    r, n = comm.rank, comm.size
    ranks = np.arange(n, dtype=np.float32)

    x = np.full(5, r + 1, np.float32)
    comm.all_reduce(x).wait(timeout=30)
    np.testing.assert_array_equal(x, np.full(5, n * (n + 1) / 2))

    y = np.array([r, -r], np.int64)
    comm.all_reduce(y, "max").wait()
    np.testing.assert_array_equal(y, [n - 1, 0])

    avg = np.full(3, float(r), np.float32)
    comm.all_reduce(avg, dtrain.ReduceOp.avg).wait()
    np.testing.assert_allclose(avg, np.full(3, ranks.mean()), rtol=1e-6)

    gathered = np.zeros(2 * n, np.float32)
    comm.all_gather(np.array([r, 10 * r], np.float32), gathered).wait()
    np.testing.assert_array_equal(gathered, np.stack([ranks, 10 * ranks], 1).reshape(-1))

    full = np.arange(3 * n, dtype=np.float32) + r  # rank r holds base + r
    part = np.zeros(3, np.float32)
    comm.reduce_scatter(full, part).wait()
    base = np.arange(3 * n, dtype=np.float32).reshape(n, 3)[r]
    np.testing.assert_array_equal(part, n * base + ranks.sum())

    b = np.full(4, 99.0 if r == n - 1 else 0.0, np.float32)
    comm.broadcast(b, root=n - 1).wait()
    np.testing.assert_array_equal(b, np.full(4, 99.0))

    send = np.array([100 * r + j for j in range(n)], np.int32)  # chunk j goes to rank j
    recv = np.zeros(n, np.int32)
    comm.all_to_all(send, recv).wait()
    np.testing.assert_array_equal(recv, 100 * np.arange(n) + r)

    if n >= 2:
        msg = np.zeros(2, np.float32)
        if r == 0:
            comm.send(np.array([1.5, 2.5], np.float32), dst=1, tag=3).wait()
        elif r == 1:
            comm.recv(msg, src=0, tag=3).wait()
            np.testing.assert_array_equal(msg, [1.5, 2.5])

    works = [comm.all_reduce(np.ones(2, np.float32) * (r + 1)) for _ in range(3)]
    for w in works:
        w.wait()
    comm.barrier().wait()
    print("collectives ok", flush=True)
