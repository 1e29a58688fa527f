"""examples/mnist.py end to end on tiny written IDX files: every output file, its shapes, metrics."""
import functools
import json

import numpy as np
import pytest

from example_modules import load_example as load_example_module
from mnist_files import tiny_mnist_with_judge


@functools.lru_cache(maxsize=None)
def load_example():
    """examples/mnist.py as a module (loaded once)."""
    return load_example_module("mnist", "main")


@pytest.fixture(scope="module")
def tiny_mnist(tmp_path_factory):
    """A data dir with 40 train / 30 test 28x28 'digits' (a bright square per class) and a judge."""
    return tiny_mnist_with_judge(tmp_path_factory.mktemp("mnist"), 40, 30, high=40, class_squares=True)


TINY = ["--epochs", "1", "--num-timesteps", "6", "--model-channels", "8", "--channel-multipliers", "1,2",
        "--samples", "20", "--sample-batch", "8", "--ddim-steps", "3", "--no-progress"]


@pytest.mark.parametrize("conditional", [False, True])
def test_example_writes_every_output(tiny_mnist, tmp_path, conditional):
    root, judge = tiny_mnist
    out = tmp_path / "run"
    argv = TINY + ["--data-dir", str(root), "--judge", str(judge), "--out", str(out)]
    if conditional:
        argv += ["--conditional", "--guidance-interval", "1,4", "--ddim-guidance-interval", "all"]
    metrics = load_example().main(argv)

    for name in ("loss.png", "samples_ddpm.png", "samples_ddim.png", "reverse.gif", "checkpoint.h5",
                 "samples.npz", "metrics.json"):
        assert (out / name).stat().st_size > 0, name
    with np.load(out / "samples.npz") as f:
        assert set(f.files) == ({"ddpm", "ddim", "labels"} if conditional else {"ddpm", "ddim"})
        for kind in ("ddpm", "ddim"):
            assert f[kind].shape == (20, 1, 28, 28) and f[kind].dtype == np.float32
            assert np.all(np.abs(f[kind]) <= 1)
        if conditional:
            np.testing.assert_array_equal(f["labels"], np.arange(20) % 10)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["samples"] == 20 and saved["epochs"] == 1 and saved["conditional"] == conditional
    assert np.isfinite(saved["fld_ddpm"]) and np.isfinite(saved["fld_ddim"])
    assert saved["guidance_interval"] == ([1, 4] if conditional else None)
    assert saved["ddim_guidance_interval"] is None
    if conditional:
        assert 0 <= saved["guided_accuracy_ddpm"] <= 1
    assert saved["fld_ddpm"] == pytest.approx(metrics["fld_ddpm"])


@pytest.mark.parametrize("flag", ["--guidance-interval", "--ddim-guidance-interval"])
@pytest.mark.parametrize("value", ["5", "a,b", "1,2,3", "50,100", "60,40"])
def test_bad_guidance_interval_flag_is_a_clear_error(flag, value, capsys):
    with pytest.raises(SystemExit):
        load_example().parse_args([flag, value])
    assert flag in capsys.readouterr().err


@pytest.mark.parametrize("T, want, want_ddim", [(100, (10, 70), (0, 95)), (6, (0, 4), (0, 5)),
                                                (1000, (100, 700), (0, 950))])
def test_default_guidance_interval_scales_with_T(T, want, want_ddim):
    args = load_example().parse_args(["--conditional", "--num-timesteps", str(T)])
    assert args.guidance_interval == want and args.ddim_guidance_interval == want_ddim
    args = load_example().parse_args(["--guidance-interval", "all", "--ddim-guidance-interval", "3,9"])
    assert args.guidance_interval is None and args.ddim_guidance_interval == (3, 9)


def test_default_eta_and_spacing_depend_on_conditioning():
    example = load_example()
    uncond, cond = example.parse_args([]), example.parse_args(["--conditional"])
    assert (uncond.eta, uncond.ddim_spacing) == (1.0, "leading")
    assert (cond.eta, cond.ddim_spacing) == (0.0, "trailing")
    given = example.parse_args(["--eta", "0.3", "--ddim-spacing", "linspace"])
    assert (given.eta, given.ddim_spacing) == (0.3, "linspace")


def test_resume_with_fld_draws_judges_a_finished_run_again(tiny_mnist, tmp_path):
    """--resume on a finished run trains nothing; --fld-draws adds independent sample sets."""
    root, judge = tiny_mnist
    argv = TINY + ["--data-dir", str(root), "--judge", str(judge), "--out", str(tmp_path / "run"),
                   "--conditional", "--guidance-interval", "all"]
    first = load_example().main(argv)
    again = load_example().main(argv + ["--resume", "--fld-draws", "3"])
    assert again["epochs"] == 1 and again["final_train_loss"] == first["final_train_loss"]
    for name in ("ddpm", "ddim"):
        draws = again[f"fld_{name}_draws"]
        assert len(draws) == 3 and all(np.isfinite(draws))
        assert draws[0] == pytest.approx(first[f"fld_{name}"])      # the same seed: the same first set
        assert len(set(draws)) == 3                                  # the further sets are new draws
        assert again[f"fld_{name}_mean"] == pytest.approx(np.mean(draws))
        assert again[f"fld_{name}_std"] == pytest.approx(np.std(draws, ddof=1))
        accs = again[f"guided_accuracy_{name}_draws"]
        assert len(accs) == 3 and accs[0] == first[f"guided_accuracy_{name}"] and all(0 <= a <= 1 for a in accs)
    assert again["fld_ddim_over_ddpm_mean"] == pytest.approx(again["fld_ddim_mean"] / again["fld_ddpm_mean"])


def test_fld_draws_below_one_is_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        load_example().parse_args(["--fld-draws", "0"])
    assert "--fld-draws" in capsys.readouterr().err


def test_conditional_run_on_the_device_matches_the_host_run(tiny_mnist, tmp_path, fake_gpu, monkeypatch):
    """--device cuda (the CuPy-like test backend, which refuses implicit host <-> device copies): the
    same seeded run as on the host, so the same samples; the judge stays on the CPU."""
    root, judge = tiny_mnist
    example = load_example()
    monkeypatch.setattr(example, "cuda_unavailable_reason", lambda: None)
    argv = TINY + ["--data-dir", str(root), "--judge", str(judge), "--conditional"]
    host = example.main(argv + ["--out", str(tmp_path / "host")])
    dev = example.main(argv + ["--out", str(tmp_path / "dev"), "--device", "cuda"])
    assert (host["device"], dev["device"]) == ("cpu", "cuda")
    with np.load(tmp_path / "host" / "samples.npz") as h, np.load(tmp_path / "dev" / "samples.npz") as d:
        for kind in ("ddpm", "ddim"):
            np.testing.assert_allclose(d[kind], h[kind], rtol=1e-3, atol=1e-3, err_msg=kind)
    assert dev["final_train_loss"] == pytest.approx(host["final_train_loss"], rel=1e-4)
