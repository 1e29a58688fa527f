"""Time two installs of minidiff against each other, alternating, with paired medians.

    python tools/ab_speed.py --a /path/to/venv_a/bin/python --b /path/to/venv_b/bin/python [--pairs 15]

Each interpreter runs a worker process (this file with --worker) that imports
whichever minidiff it has installed and builds the cases once, with fixed seeds:

    unet_train_step   the anchor U-Net (1 -> 16 channels, multipliers 1, 2, 3, T = 100), batch 32:
                      p_losses, zero_grad, backward, Adam step
    unet_forward      the same U-Net, batch 64, under no_grad
    ddim_20           DDIM, 20 steps, eta 0, 64 samples of 28x28, the same U-Net
    spiral_step       the spiral example's MLP (d_hid 32, T = 40), batch 32, one train step

The driver then alternates A and B, case by case: each turn runs 0.5 s of
untimed calls (the other process's spinning thread pools wind down meanwhile)
and then `--calls` timed calls, whose median is that turn's time. The ratio
B / A of each pair of turns is taken, and the median and range of those ratios
are printed with each side's median time. Run nothing else on the machine.
"""
import argparse
import json
import os
import subprocess
import sys
import time


def build(name):
    import numpy as np
    from minidiff.diffusion import GaussianDiffusion
    from minidiff.models import MLP, UNet
    from minidiff.nn import no_grad
    from minidiff.optim import Adam
    anchor = dict(in_channels=1, model_channels=16, num_timesteps=100, channel_multipliers=(1, 2, 3))
    if name in ("unet_train_step", "spiral_step"):
        if name == "unet_train_step":
            model, T = UNet(**anchor), 100
            x0 = np.random.default_rng(1).uniform(-1, 1, (32, 1, 28, 28)).astype(np.float32)
        else:
            model, T = MLP(in_dim=2, d_hid=32, num_timesteps=40, num_layers=3), 40
            x0 = np.random.default_rng(1).standard_normal((32, 2)).astype(np.float32)
        diffusion, opt, rng = GaussianDiffusion(model, T), Adam(model, lr=1e-3), np.random.default_rng(0)

        def step():
            _, d_out = diffusion.p_losses(x0, rng=rng)
            model.zero_grad()
            model.backward(d_out)
            opt.step()
        return step
    model = UNet(**anchor)
    if name == "unet_forward":
        x = np.random.default_rng(1).standard_normal((64, 1, 28, 28)).astype(np.float32)
        t = np.random.default_rng(2).integers(0, 100, 64)

        def forward():
            with no_grad():
                model.forward(x, t)
        return forward
    if name == "ddim_20":
        diffusion = GaussianDiffusion(model, 100)
        return lambda: diffusion.ddim_sample_loop((64, 1, 28, 28), sampling_timesteps=20, eta=0.0,
                                                  rng=np.random.default_rng(0), progress=False)
    raise ValueError(f"unknown case {name!r}")


def worker():
    """Read 'case calls' lines; answer each with the JSON list of the timed calls' seconds."""
    cases = {}
    for line in sys.stdin:
        name, calls = line.split()
        fn = cases.get(name) or cases.setdefault(name, build(name))
        t0 = time.perf_counter()
        fn()
        while time.perf_counter() - t0 < 0.5:
            fn()
        times = []
        for _ in range(int(calls)):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        print(json.dumps(times), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", help="python of install A (the baseline)")
    ap.add_argument("--b", help="python of install B")
    ap.add_argument("--pairs", type=int, default=15)
    ap.add_argument("--calls", type=int, default=5, help="timed calls per turn")
    ap.add_argument("--cases", default="unet_train_step,unet_forward,ddim_20,spiral_step")
    ap.add_argument("--cwd", default="/", help="where the workers run (outside both checkouts)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker()
    if not (args.a and args.b):
        ap.error("--a and --b are required: the two interpreters to compare")
    import numpy as np
    procs = {k: subprocess.Popen([py, os.path.abspath(__file__), "--worker"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True, cwd=args.cwd)
             for k, py in (("A", args.a), ("B", args.b))}

    def turn(side, name, calls):
        p = procs[side]
        p.stdin.write(f"{name} {calls}\n")
        p.stdin.flush()
        return float(np.median(json.loads(p.stdout.readline())))

    for name in args.cases.split(","):
        calls = 1 if name == "ddim_20" else args.calls
        a, b = [], []
        for i in range(args.pairs):
            order = ("A", "B") if i % 2 == 0 else ("B", "A")
            got = {side: turn(side, name, calls) for side in order}
            a.append(got["A"])
            b.append(got["B"])
        r = np.array(b) / np.array(a)
        print(f"{name:16s} A {1e3 * np.median(a):8.2f} ms  B {1e3 * np.median(b):8.2f} ms  "
              f"B/A median {np.median(r):.3f} (range {r.min():.3f}-{r.max():.3f}, {len(r)} pairs)", flush=True)
    for p in procs.values():
        p.stdin.close()
        p.wait()


if __name__ == "__main__":
    main()
