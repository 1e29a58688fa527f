"""Samples per second of the anchor U-Net's train step on 1 or more MPI ranks, and the all-reduce's share.

    python tools/dist_scaling.py                   # 1 rank, Numba/BLAS on every core
    mpiexec -n 2 python tools/dist_scaling.py      # 2 ranks, the cores shared (1 thread each on 2 cores)

The anchor U-Net (1 -> 16 channels, multipliers 1, 2, 3, T = 100, 1.31 MB of
float32 parameters), MNIST-shaped random data, global batch --batch (default
32) shared between the ranks as train() shares it. Per step, timed on every
rank: the loss and backward on its rows, the gradient all-reduce
(minidiff.distributed.data_parallel.average_gradient, including the wait for the
slowest rank), Adam. After --warmup untimed steps, the medians of --steps
steps; rank 0 prints one JSON line (samples/s = batch / the slowest rank's
median step). Run nothing else on the machine.
"""
import argparse
import json
import time

import numpy as np


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=32, help="global batch")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    args = p.parse_args(argv)
    for name in ("batch", "steps", "warmup"):
        if getattr(args, name) < (0 if name == "warmup" else 1):
            p.error(f"--{name}: expected an integer >= {0 if name == 'warmup' else 1}, got {getattr(args, name)}")

    from minidiff.backend import to_host
    from minidiff.diffusion import GaussianDiffusion
    from minidiff.distributed import get_world
    from minidiff.distributed.data_parallel import average_gradient, broadcast_state, p_losses
    from minidiff.models import UNet
    from minidiff.optim import Adam

    world = get_world()
    model = UNet(1, 16, 100, channel_multipliers=(1, 2, 3), seed=0)
    diffusion = GaussianDiffusion(model, 100, schedule="cosine", data_shape=(1, 28, 28))
    optimizer = Adam(model, lr=1e-3)
    _, grad = model.flat()
    broadcast_state(world, model, optimizer)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(4 * args.batch, 1, 28, 28)).astype(np.float32)   # (4B, 1, 28, 28)
    times = []
    for step in range(args.warmup + args.steps):
        idx = rng.permutation(len(x))[:args.batch]                                  # (B,)
        world.barrier("barrier(step)")
        t0 = time.perf_counter()
        value, d_out = p_losses(world, diffusion, x, idx, None, "mse", rng)
        float(to_host(value))
        model.zero_grad()
        model.backward(d_out)
        t1 = time.perf_counter()
        average_gradient(world, grad, args.batch)
        t2 = time.perf_counter()
        optimizer.step()
        t3 = time.perf_counter()
        if step >= args.warmup:
            times.append((t3 - t0, t2 - t1))
    step_s, reduce_s = np.median(np.array(times), axis=0)
    per_rank = world.gather_rows(np.array([[step_s, reduce_s]]), "gather(times)")           # (ranks, 2)
    if world.is_root:
        slowest = per_rank[:, 0].max()
        print(json.dumps({"ranks": world.size, "global_batch": args.batch, "parameters": model.num_params(),
                          "step_ms_per_rank": [round(1e3 * s, 2) for s in per_rank[:, 0]],
                          "allreduce_ms_per_rank": [round(1e3 * s, 3) for s in per_rank[:, 1]],
                          "allreduce_share": round(float(per_rank[:, 1].max() / slowest), 4),
                          "samples_per_s": round(float(args.batch / slowest), 1)}))


if __name__ == "__main__":
    main()
