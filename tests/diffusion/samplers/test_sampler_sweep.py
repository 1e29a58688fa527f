"""The examples' sampler sweep (minidiff/diffusion/samplers/sweep.py): flags checked as parsed, runs within
the model-call budget, one row per run."""
import argparse

import numpy as np
import pytest

from minidiff.diffusion.samplers.sweep import (FEW_STEP, add_sampler_arguments, check_sampler_arguments,
                                               run_sweep, sweep_runs)


def parser():
    p = argparse.ArgumentParser()
    add_sampler_arguments(p, samplers="all", steps="5,10")
    return p


def parse(argv, T=40):
    p = parser()
    args = p.parse_args(argv)
    check_sampler_arguments(p, args, T)
    return args


def test_flags_parse():
    args = parse(["--sampler", "heun,dpmpp_2m", "--steps", "20,3,7", "--max-evals", "30"])
    assert args.sampler == ["heun", "dpmpp_2m"] and args.steps == [3, 7, 20] and args.max_evals == 30
    assert args.sampler_spacing is None and not hasattr(args, "default_sampler_steps")
    defaults = parse([])
    assert defaults.sampler == FEW_STEP and "ddpm" not in FEW_STEP and defaults.steps == [5, 10]
    assert parse([], T=7).steps == [5]                                # the defaults, trimmed to T
    assert parse(["--sampler", "none"]).sampler == []


@pytest.mark.parametrize("argv, flag", [(["--sampler", "dpm"], "--sampler"), (["--sampler", "heun,heun"], "--sampler"),
                                        (["--steps", "0,5"], "--steps"), (["--steps", "5,x"], "--steps"),
                                        (["--steps", "5,5"], "--steps"), (["--max-evals", "0"], "--max-evals"),
                                        (["--sampler-spacing", "uniform"], "--sampler-spacing")])
def test_bad_flags_fail_at_parse_time(argv, flag, capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(argv)
    assert flag in capsys.readouterr().err


def test_given_steps_above_T_are_refused(capsys):
    with pytest.raises(SystemExit):
        parse(["--steps", "5,50"], T=40)
    assert "--steps" in capsys.readouterr().err
    assert parse(["--steps", "5,40"], T=40).steps == [5, 40]


def test_runs_keep_within_the_model_call_budget():
    runs = sweep_runs(["ddpm", "heun", "dpmpp_2m"], [5, 50, 60], T=100, max_evals=100)
    assert runs == [("ddpm", 100), ("heun", 5), ("heun", 50), ("dpmpp_2m", 5), ("dpmpp_2m", 50), ("dpmpp_2m", 60)]
    assert sweep_runs(["heun"], [60], T=100, max_evals=None) == [("heun", 60)]


def test_run_sweep_rows():
    calls = []

    def sample(name, steps):
        calls.append((name, steps))
        return np.full(3, float(steps))

    rows = run_sweep([("heun", 4), ("dpmpp_2m_sde", 6)], sample, lambda n, s, x: dict(score=float(x.sum())),
                     spacing="karras", log=None)
    assert calls == [("heun", 4), ("dpmpp_2m_sde", 6)]
    assert [(r["sampler"], r["steps"], r["model_evaluations"], r["spacing"], r["eta"], r["score"]) for r in rows] \
        == [("heun", 4, 7, "karras", None, 12.0), ("dpmpp_2m_sde", 6, 6, "karras", 1.0, 18.0)]
    assert all(r["sample_time_s"] >= 0 for r in rows)
