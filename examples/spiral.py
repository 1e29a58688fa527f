"""Train a DDPM on the 2-D spiral, sample it with DDPM and DDIM, and measure how
close the samples lie to the clean spiral.

    python examples/spiral.py                  # defaults (about 25 s on 2 cores)
    python examples/spiral.py --epochs 100 --ema-decay 0 --out outputs/anchor   # the Julia anchor's recipe
    mpiexec -n 2 python examples/spiral.py     # two ranks share each batch; rank 0 samples and writes
    python examples/spiral.py --device cuda    # on a GPU (CuPy + the Numba CUDA kernels: pip install -e ".[gpu]")

The model, schedule, data and optimiser are DenoisingDiffusion.jl's spiral run
(MLP d_hid 32, T = 40, linear betas (8e-6, 9e-5) x 1000/T, 10,000 points,
batch 32, Adam 1e-3). Two defaults differ from that anchor because training
here is fast: 400 epochs instead of 100, and an EMA of the weights (0.999);
with the anchor's 100 epochs and no EMA, DDPM lands near the anchor's 0.015.
DDIM uses `trailing` spacing (its first step at t = T-1).

Then the sampler sweep: every --sampler at every --steps (default: all few-step
samplers at 5, 10, 20, 40 steps), the mean distance against model evaluations.

Writes into --out: loss.png, forward.png, reverse.gif, samples.png,
distance.png, sampler_distance.png, checkpoint.h5, samples.npz (arrays `ddpm`,
`ddim`, each (N, 2)), metrics.json (`sampler_runs`: a row per sweep run).
"""
import argparse
import json
import os
import time

import numpy as np

from minidiff import distributed, plotting
from minidiff.backend import cuda_unavailable_reason, to_device, to_host
from minidiff.data.toy2d import make_spiral
from minidiff.diffusion import GaussianDiffusion, make_betas
from minidiff.diffusion.samplers.sweep import add_sampler_arguments, check_sampler_arguments, run_sweep, sweep_runs
from minidiff.flags import integer, output_dir, real
from minidiff.metrics.spiral import distance_per_timestep, mean_spiral_distance
from minidiff.models import MLP
from minidiff.optim import EMA, Adam
from minidiff.train import train


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # settings
    p.add_argument("--out", type=output_dir, default="outputs/spiral", help="output directory")
    p.add_argument("--seed", type=integer(0), default=0)
    p.add_argument("--n-points", type=integer(1), default=10_000, help="training points")
    p.add_argument("--data-noise", type=real(0), default=0.0, help="std of noise added to the training spiral")
    p.add_argument("--num-timesteps", type=integer(1), default=40, help="T")
    p.add_argument("--schedule", default="linear", choices=["linear", "cosine", "sigmoid"])
    p.add_argument("--beta-start", type=real(), default=8e-6, help="linear schedule, before the 1000/T scaling")
    p.add_argument("--beta-end", type=real(), default=9e-5, help="linear schedule, before the 1000/T scaling")
    p.add_argument("--d-hid", type=integer(4, even=True), default=32)
    p.add_argument("--epochs", type=integer(1), default=400)
    p.add_argument("--batch-size", type=integer(1), default=32)
    p.add_argument("--lr", type=real(0, low_open=True), default=1e-3)
    p.add_argument("--ema-decay", type=real(0, 1, high_open=True), default=0.999,
                   help="EMA of the weights; 0 = off")
    p.add_argument("--checkpoint-every", type=integer(1), default=10, help="epochs between checkpoints")
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.h5")
    p.add_argument("--samples", type=integer(1), default=1000, help="points to sample with each sampler")
    p.add_argument("--ddim-steps", type=integer(1), default=None, help="default: 20 (T if T < 20)")
    p.add_argument("--eta", type=real(0, 1), default=0.0, help="DDIM eta (0 = deterministic)")
    p.add_argument("--ddim-spacing", default="trailing", choices=["linspace", "leading", "trailing"],
                   help="which DDIM timesteps (trailing starts at t = T-1)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="where the model trains and samples (cuda: CuPy and a CUDA device)")
    p.add_argument("--no-progress", action="store_true")
    add_sampler_flags(p)
    args = p.parse_args(argv)
    T = args.num_timesteps
    if args.ddim_steps is None:
        args.ddim_steps = min(20, T)
    if args.ddim_steps > T:
        p.error(f"--ddim-steps: expected an integer in [1, {T}] (--num-timesteps), got {args.ddim_steps}")
    betas = make_betas(args.schedule, T, **schedule_kwargs(args))
    if not np.all((betas > 0) & (betas < 1)):
        p.error(f"--schedule / --num-timesteps / --beta-start / --beta-end: every beta must lie in (0, 1), got "
                f"min {betas.min():g}, max {betas.max():g} for the {args.schedule} schedule with T = {T} "
                f"(linear scales its betas by 1000/T)")
    check_sampler_arguments(p, args, args.num_timesteps)
    reason = cuda_unavailable_reason() if args.device == "cuda" else None
    if reason is not None:
        p.error(f"--device cuda needs CuPy and a CUDA device: {reason}")
    return args


def schedule_kwargs(args):
    """The schedule's own flags: --beta-start and --beta-end for the linear schedule."""
    return dict(beta_start=args.beta_start, beta_end=args.beta_end) if args.schedule == "linear" else {}


def add_sampler_flags(p):
    """--sampler, --steps, --sampler-spacing, --max-evals (minidiff/diffusion/samplers/sweep.py)."""
    add_sampler_arguments(p, samplers="all", steps="5,10,20,40")


def sampler_sweep(args, diffusion, d_ddpm):
    """Each --sampler at each --steps, from the same noise: the mean spiral distance against model
    evaluations -> rows for metrics.json, and sampler_distance.png with DDPM's T steps as the reference."""
    runs = sweep_runs(args.sampler, args.steps, args.num_timesteps, args.max_evals)
    if not runs:
        return []
    print(f"sampler sweep ({args.samples} points, the same noise for every run):")

    def sample(name, steps):
        spacing = None if name == "ddpm" else args.sampler_spacing
        return diffusion.sample((args.samples, 2), sampler=name, steps=steps, spacing=spacing, rng=args.seed + 4,
                                progress=False)

    rows = run_sweep(runs, sample, lambda name, steps, x: dict(mean_distance=mean_spiral_distance(x)),
                     spacing=args.sampler_spacing)
    plotting.plot_sampler_sweep(rows, [("mean_distance", "mean distance to the spiral", True)],
                                os.path.join(args.out, "sampler_distance.png"),
                                references=[(f"DDPM, {args.num_timesteps} steps", {"mean_distance": d_ddpm})],
                                title=f"spiral: {args.samples} samples per run")
    return rows


def main(argv=None):
    args = parse_args(argv)
    world = distributed.get_world()                  # several ranks under mpiexec (docs/distributed.md)
    distributed.quiet_unless_root(world)
    os.makedirs(args.out, exist_ok=True)
    progress = not args.no_progress
    t_start = time.perf_counter()

    # --- data -----------------------------------------------------------
    rng = np.random.default_rng(args.seed)
    X = make_spiral(args.n_points, noise=args.data_noise, rng=rng)           # (N, 2)
    X_val = make_spiral(max(args.n_points // 10, 1), noise=args.data_noise, rng=rng)

    # --- model ----------------------------------------------------------
    model = MLP(in_dim=2, d_hid=args.d_hid, num_timesteps=args.num_timesteps, seed=args.seed)
    diffusion = GaussianDiffusion(model, args.num_timesteps, schedule=args.schedule,
                                  schedule_kwargs=schedule_kwargs(args), data_shape=(2,))
    if args.device == "cuda":
        model.to("cuda")
        diffusion.to("cuda")
    print(model)
    print(f"parameters: {model.num_params():,}")

    # --- train ----------------------------------------------------------
    ckpt = os.path.join(args.out, "checkpoint.h5")
    optimizer = Adam(model, lr=args.lr)
    ema = EMA(model, decay=args.ema_decay) if args.ema_decay > 0 else None
    t0 = time.perf_counter()
    history = train(diffusion, X, val_data=X_val, epochs=args.epochs, batch_size=args.batch_size,
                    optimizer=optimizer, ema=ema, checkpoint_path=ckpt,
                    checkpoint_every=args.checkpoint_every, resume=args.resume,
                    seed=args.seed, progress=progress)
    train_time = time.perf_counter() - t0
    if not world.is_root:                            # the other ranks only train
        return None
    if ema is not None:
        ema.copy_to(model)
    plotting.plot_history(history, os.path.join(args.out, "loss.png"), title="spiral MLP: loss")

    # --- forward process figure ----------------------------------------
    T = args.num_timesteps
    steps = sorted({0, T // 4, T // 2, 3 * T // 4, T - 1})
    x0 = X[:1000]
    on = lambda a: to_device(a, args.device)                                  # noqa: E731
    panels = [("data", x0)] + [(f"q(x_t | x0), t={t}", to_host(diffusion.q_sample(
        on(x0), t, on(rng.standard_normal(x0.shape).astype(np.float32))))) for t in steps]
    plotting.scatter_panels(panels, os.path.join(args.out, "forward.png"), suptitle="forward process")

    # --- sample ---------------------------------------------------------
    t0 = time.perf_counter()
    xs, x0_hats = map(to_host, diffusion.p_sample_loop_all((args.samples, 2), rng=args.seed + 1,
                                                           progress=progress))   # (T+1, N, 2), (T, N, 2)
    ddpm = xs[-1]                                                              # (N, 2)
    ddim = to_host(diffusion.ddim_sample_loop((args.samples, 2), sampling_timesteps=args.ddim_steps, eta=args.eta,
                                              spacing=args.ddim_spacing, rng=args.seed + 2, progress=progress))
    sample_time = time.perf_counter() - t0

    # --- evaluate -------------------------------------------------------
    d_ddpm, d_ddim = mean_spiral_distance(ddpm), mean_spiral_distance(ddim)
    d_noise = mean_spiral_distance(np.random.default_rng(args.seed + 3).standard_normal((args.samples, 2)))
    d_data = mean_spiral_distance(X_val[:args.samples])
    print(f"mean spiral distance: DDPM {d_ddpm:.4f} | DDIM ({args.ddim_steps} {args.ddim_spacing} steps, "
          f"eta {args.eta}) {d_ddim:.4f}"
          f" | held-out data {d_data:.4f} | Gaussian noise {d_noise:.3f}")

    np.savez(os.path.join(args.out, "samples.npz"), ddpm=np.asarray(ddpm), ddim=np.asarray(ddim))
    plotting.scatter_panels([("data", X[:args.samples]), (f"DDPM, d={d_ddpm:.4f}", ddpm),
                             (f"DDIM {args.ddim_steps} steps, d={d_ddim:.4f}", ddim)],
                            os.path.join(args.out, "samples.png"), lim=1.2)
    dist_xt = distance_per_timestep(xs)                                       # (T+1,)
    dist_x0 = distance_per_timestep(x0_hats)                                  # (T,)
    t_axis = np.arange(T - 1, -2, -1)                                         # x_{T-1} ... x_{-1}
    plotting.plot_curves([("x_t", t_axis, dist_xt), ("x0_hat(x_t)", np.arange(T - 1, -1, -1), dist_x0)],
                         os.path.join(args.out, "distance.png"), xlabel="timestep t (reverse run goes right)",
                         ylabel="mean distance to spiral", title="DDPM reverse process", logy=True, invert_x=True)
    titles = [f"t = {t}" for t in range(T - 1, -1, -1)]
    plotting.scatter_gif(xs[1:], x0_hats, titles, os.path.join(args.out, "reverse.gif"), lim=1.6)
    sweep = sampler_sweep(args, diffusion, d_ddpm)

    metrics = dict(ddpm_mean_distance=d_ddpm, ddim_mean_distance=d_ddim, ddim_steps=args.ddim_steps, eta=args.eta,
                   ddim_spacing=args.ddim_spacing,
                   heldout_data_mean_distance=d_data, gaussian_noise_mean_distance=d_noise,
                   samples=args.samples, epochs=len(history["train_loss"]), device=args.device,
                   final_train_loss=history["train_loss"][-1], final_val_loss=history["val_loss"][-1],
                   train_time_s=train_time, sample_time_s=sample_time, sampler_runs=sweep,
                   total_time_s=time.perf_counter() - t_start)
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    print(f"train {train_time:.1f}s, sample {sample_time:.1f}s, total {metrics['total_time_s']:.1f}s; "
          f"outputs in {args.out}/")
    return metrics


if __name__ == "__main__":
    main()
