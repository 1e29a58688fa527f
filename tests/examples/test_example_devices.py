"""The examples' --device flag: validated before any work, and their GPU path keeps data on the device."""
import json

import numpy as np
import pytest

from example_modules import load_example


def load(name):
    return load_example(name, "devices")


@pytest.mark.parametrize("name", ["spiral", "mnist"])
def test_device_flag_is_checked_at_once(name, monkeypatch, capsys):
    example = load(name)
    assert example.parse_args([]).device == "cpu"
    monkeypatch.setattr(example, "cuda_unavailable_reason", lambda: "no device here (test)")
    with pytest.raises(SystemExit) as e:
        example.parse_args(["--device", "cuda"])
    assert e.value.code == 2
    assert "--device cuda needs CuPy and a CUDA device: no device here (test)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        example.parse_args(["--device", "tpu"])
    monkeypatch.setattr(example, "cuda_unavailable_reason", lambda: None)
    assert example.parse_args(["--device", "cuda"]).device == "cuda"


def test_spiral_runs_its_gpu_path_on_the_device(fake_gpu, tmp_path, monkeypatch):
    example = load("spiral")
    monkeypatch.setattr(example, "cuda_unavailable_reason", lambda: None)
    out = tmp_path / "spiral"
    metrics = example.main(["--device", "cuda", "--epochs", "1", "--n-points", "256", "--samples", "64",
                            "--ddim-steps", "4", "--out", str(out), "--no-progress"])
    assert metrics["device"] == "cuda" and json.loads((out / "metrics.json").read_text())["device"] == "cuda"
    with np.load(out / "samples.npz") as f:
        assert f["ddpm"].shape == f["ddim"].shape == (64, 2) and np.isfinite(f["ddim"]).all()
    for name in ("forward.png", "reverse.gif", "checkpoint.h5"):
        assert (out / name).stat().st_size > 0, name
