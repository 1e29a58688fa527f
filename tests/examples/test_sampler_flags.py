"""The examples' --sampler / --steps sweep: flags checked at parse time, a row per run in metrics.json, the
plots and grids written (tiny settings: nothing here measures quality)."""
import functools
import json

import numpy as np
import pytest

from example_modules import load_example


@functools.lru_cache(maxsize=None)
def load(name):
    return load_example(name, "sweep")


@pytest.mark.parametrize("name", ["spiral", "mnist"])
@pytest.mark.parametrize("argv, flag", [(["--sampler", "fast"], "--sampler"), (["--steps", "3,x"], "--steps"),
                                        (["--steps", "5,500"], "--steps"), (["--max-evals", "-1"], "--max-evals")])
def test_bad_sampler_flags_fail_at_parse_time(name, argv, flag, capsys):
    with pytest.raises(SystemExit):
        load(name).parse_args(argv)
    assert flag in capsys.readouterr().err


def test_sweep_defaults():
    spiral, mnist = load("spiral").parse_args([]), load("mnist").parse_args([])
    assert spiral.sampler[:2] == ["ddim", "euler"] and spiral.steps == [5, 10, 20, 40]
    assert mnist.sampler == [] and mnist.steps == [5, 7, 10, 15, 20, 30, 50, 100]   # MNIST: no sweep unless asked
    assert load("mnist").parse_args(["--num-timesteps", "12"]).steps == [5, 7, 10]  # defaults trimmed to T


def test_spiral_sweep_writes_rows_and_plot(tmp_path):
    argv = ["--epochs", "1", "--n-points", "200", "--samples", "50", "--num-timesteps", "30", "--out",
            str(tmp_path), "--no-progress", "--sampler", "heun,dpmpp_2m_sde,ddpm", "--steps", "3,6"]
    metrics = load("spiral").main(argv)
    rows = json.loads((tmp_path / "metrics.json").read_text())["sampler_runs"]
    assert [(r["sampler"], r["steps"], r["model_evaluations"]) for r in rows] == \
        [("heun", 3, 5), ("heun", 6, 11), ("dpmpp_2m_sde", 3, 3), ("dpmpp_2m_sde", 6, 6), ("ddpm", 30, 30)]
    assert all(np.isfinite(r["mean_distance"]) and r["mean_distance"] > 0 for r in rows)
    assert rows[-1]["mean_distance"] == pytest.approx(metrics["ddpm_mean_distance"], rel=0.5)  # another draw
    assert (tmp_path / "sampler_distance.png").stat().st_size > 0


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from mnist_files import tiny_mnist_with_judge
    return tiny_mnist_with_judge(tmp_path_factory.mktemp("mnist_sweep"), 30, 20)


def test_mnist_sweep_writes_rows_plot_and_grids(tiny_data, tmp_path):
    root, judge = tiny_data
    argv = ["--epochs", "1", "--num-timesteps", "6", "--model-channels", "8", "--channel-multipliers", "1,2",
            "--samples", "20", "--sample-batch", "10", "--ddim-steps", "3", "--no-progress", "--data-dir", str(root),
            "--judge", str(judge), "--out", str(tmp_path), "--conditional", "--fld-draws", "2",
            "--sampler", "dpmpp_2m,heun", "--steps", "2,4", "--max-evals", "5"]
    metrics = load("mnist").main(argv)
    rows = json.loads((tmp_path / "metrics.json").read_text())["sampler_runs"]
    assert [(r["sampler"], r["steps"], r["model_evaluations"]) for r in rows] == \
        [("dpmpp_2m", 2, 2), ("dpmpp_2m", 4, 4), ("heun", 2, 3)]             # heun 4 steps: 7 calls > 5
    for r in rows:
        assert len(r["fld_draws"]) == 2 and r["fld"] == pytest.approx(np.mean(r["fld_draws"]))
        assert len(r["guided_accuracy_draws"]) == 2 and 0 <= r["guided_accuracy"] <= 1
        assert (tmp_path / "sweep" / f"samples_{r['sampler']}_{r['steps']}.png").stat().st_size > 0
    assert (tmp_path / "sampler_quality.png").stat().st_size > 0
    assert metrics["sampler_runs"] == rows


def test_mnist_sweep_guides_stochastic_samplers_as_ddpm_and_deterministic_ones_as_ddim(tiny_data, tmp_path,
                                                                                        monkeypatch):
    from minidiff.diffusion import GaussianDiffusion
    root, judge = tiny_data
    seen = []
    real_sample = GaussianDiffusion.sample

    def recording_sample(self, shape, sampler="dpmpp_2m", **kw):
        seen.append((sampler, kw["guidance_interval"]))
        return real_sample(self, shape, sampler=sampler, **kw)

    monkeypatch.setattr(GaussianDiffusion, "sample", recording_sample)
    argv = ["--epochs", "1", "--num-timesteps", "6", "--model-channels", "8", "--channel-multipliers", "1,2",
            "--samples", "10", "--sample-batch", "10", "--ddim-steps", "3", "--no-progress", "--data-dir", str(root),
            "--judge", str(judge), "--out", str(tmp_path), "--conditional", "--guidance-interval", "1,4",
            "--ddim-guidance-interval", "0,5", "--sampler", "ddim,dpmpp_2m,heun,euler_ancestral,dpmpp_2m_sde,ddpm",
            "--steps", "2"]
    load("mnist").main(argv)
    assert dict(seen) == {"ddim": (0, 5), "dpmpp_2m": (0, 5), "heun": (0, 5),
                          "euler_ancestral": (1, 4), "dpmpp_2m_sde": (1, 4), "ddpm": (1, 4)}
