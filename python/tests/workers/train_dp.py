"""Worker: the run of dp_common.py through the data-parallel engine at any
world size. Rank 0 saves the averaged losses and the final parameters to
the .npz file named by argv[1]; argv[2] is the ZeRO stage."""
import sys

import numpy as np

import dtrain
import dp_common

out_path, stage = sys.argv[1], int(sys.argv[2])
with dtrain.process_group() as comm:
    model, loader = dp_common.setup(comm.rank, comm.size)
    engine = dtrain.parallel.DataParallel(model, comm, stage=stage, first_bucket_mb=0.05, bucket_mb=0.2)
    opt = dtrain.optim.SGD(engine.param_groups(0.0), momentum=0.9)
    losses = []
    for _ in range(dp_common.STEPS):
        x, y = loader.next()
        loss = model(x, y, grad_scale=engine.grad_scale)
        model.backward()
        engine.step(opt, dp_common.LR)
        losses.append(engine.average(loss))
    params = dict(engine.full_parameters())
    if comm.rank == 0:
        np.savez(out_path, losses=np.array(losses), **{k: v.numpy() for k, v in params.items()})
    print("trained", comm.rank, flush=True)
