"""Run samplers at several step counts, one row per run: the examples' --sampler / --steps sweep.

    add_sampler_arguments(parser, samplers="all", steps="5,10,20")   --sampler, --steps, --sampler-spacing,
                                                                    --max-evals, checked as they are parsed
    check_sampler_arguments(parser, args, T)                        after parsing (T is a flag too): given steps
                                                                    <= T, default steps trimmed to T
    sweep_runs(samplers, steps, T, max_evals)                       [(sampler, steps)], within the budget
    run_sweep(runs, sample, score, ...)                             [row]: sampler, steps, spacing, eta,
                                                                    model_evaluations, sample_time_s, scores

`sample(sampler, steps)` draws the samples (the example batches, guides and seeds
them; its time is the row's sample_time_s); `score(sampler, steps, samples)`
returns a dict of numbers for the row (and may save figures).
"""
import argparse
import time

from ...flags import integer
from .sample import SAMPLERS, model_evaluations
from .spacing import SPACINGS

FEW_STEP = [name for name in SAMPLERS if name != "ddpm"]       # what --sampler all runs


def parse_samplers(text):
    """'all', '' (none) or a comma list of SAMPLERS names -> list; argparse type for --sampler."""
    if text.strip() in ("", "none"):
        return []
    if text.strip() == "all":
        return list(FEW_STEP)
    names = [v.strip() for v in text.split(",")]
    bad = [v for v in names if v not in SAMPLERS]
    if bad or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"expected 'all', 'none' or a comma list of distinct samplers from "
                                         f"{list(SAMPLERS)}, got {text!r}")
    return names


def parse_steps(text):
    """'5,10,20' -> [5, 10, 20] (positive, distinct, sorted); argparse type for --steps."""
    try:
        steps = [int(v) for v in text.split(",")]
    except ValueError:
        steps = None
    if not steps or any(s < 1 for s in steps) or len(set(steps)) != len(steps):
        raise argparse.ArgumentTypeError(f"expected a comma list of distinct positive integers, got {text!r}")
    return sorted(steps)


def add_sampler_arguments(parser, samplers="all", steps="5,10,20", max_evals=100):
    """Add --sampler, --steps, --sampler-spacing and --max-evals to an argparse parser."""
    g = parser.add_argument_group("sampler sweep (GaussianDiffusion.sample)")
    g.add_argument("--sampler", type=parse_samplers, default=parse_samplers(samplers),
                   help=f"comma list of samplers from {', '.join(SAMPLERS)}; 'all' = every one but ddpm; "
                        f"'none' = no sweep (default: {samplers or 'none'})")
    g.add_argument("--steps", type=parse_steps, default=None,
                   help=f"comma list of step counts each sampler runs (default: {steps}, those up to T)")
    parser.set_defaults(default_sampler_steps=parse_steps(steps))
    g.add_argument("--sampler-spacing", default=None, choices=list(SPACINGS),
                   help="timestep spacing for every sampler of the sweep (default: each sampler's own)")
    g.add_argument("--max-evals", type=integer(1), default=max_evals,
                   help=f"skip runs that would call the model more often (heun: 2 steps - 1; default {max_evals})")


def check_sampler_arguments(parser, args, T):
    """The checks that need T: every given --steps value at most T (parser.error otherwise); without
    --steps, the default step counts up to T."""
    defaults = args.__dict__.pop("default_sampler_steps")
    if args.steps is None:
        args.steps = [s for s in defaults if s <= T]
    elif any(s > T for s in args.steps):
        parser.error(f"--steps: every value must be at most T = {T}, got {args.steps}")


def sweep_runs(samplers, steps, T, max_evals=None):
    """[(sampler, steps)] for every sampler and step count (ddpm once, at T), dropping runs that call the
    model more than max_evals times (ddpm is kept: it is the reference)."""
    runs = []
    for name in samplers:
        for s in ([T] if name == "ddpm" else steps):
            if name == "ddpm" or max_evals is None or model_evaluations(name, s) <= max_evals:
                runs.append((name, s))
    return runs


def run_sweep(runs, sample, score, spacing=None, log=print):
    """One row per (sampler, steps) run: timing of `sample`, then `score` of its samples."""
    rows = []
    for name, steps in runs:
        t0 = time.perf_counter()
        samples = sample(name, steps)
        elapsed = time.perf_counter() - t0
        info = SAMPLERS[name]
        row = dict(sampler=name, steps=int(steps), model_evaluations=model_evaluations(name, steps),
                   spacing=None if name == "ddpm" else (spacing or info.spacing), eta=info.eta,
                   sample_time_s=elapsed, **score(name, steps, samples))
        rows.append(row)
        if log is not None:
            scores = ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k not in ("sampler", "steps", "spacing",
                               "eta", "model_evaluations", "sample_time_s") and isinstance(v, float))
            log(f"  {name:16s} {steps:4d} steps, {row['model_evaluations']:4d} model calls, {elapsed:7.2f} s: {scores}")
    return rows
