"""Every flag of examples/mnist.py, examples/spiral.py and `python -m minidiff.judge` is checked
when it is parsed: a bad value exits with argparse's usage error naming the flag, the value and
what was expected, before any data is read, any model trained or any directory made."""
import pytest

import minidiff.judge as judge_module
from example_modules import load_example


def load(name):
    return load_example(name, "flags")


def _no_work(*args, **kwargs):
    raise AssertionError("work started before the flags were checked")


@pytest.fixture
def mnist(monkeypatch):
    module = load("mnist")
    for name in ("get_mnist", "train", "load_judge"):
        monkeypatch.setattr(module, name, _no_work)
    return module


@pytest.fixture
def spiral(monkeypatch):
    module = load("spiral")
    for name in ("make_spiral", "train"):
        monkeypatch.setattr(module, name, _no_work)
    return module


def refused(main, argv, capsys, *fragments):
    """main(argv) exits with status 2 before any work; stderr holds every fragment; --out was not made."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"
    return err


MNIST_BAD = [
    (["--batch-size", "0"], ("argument --batch-size: expected an integer >= 1, got '0'",)),
    (["--batch-size", "x"], ("argument --batch-size: expected an integer >= 1, got 'x'",)),
    (["--samples", "0"], ("argument --samples: expected an integer >= 1, got '0'",)),
    (["--sample-batch", "0"], ("argument --sample-batch: expected an integer >= 1, got '0'",)),
    (["--max-train", "0"], ("argument --max-train: expected an integer >= 1, got '0'",)),
    (["--max-train", "-5"], ("argument --max-train: expected an integer >= 1, got '-5'",)),
    (["--channel-multipliers", "a"], ("argument --channel-multipliers: expected comma-separated integers >= 1"
                                      " (e.g. 1,2,3), got 'a'",)),
    (["--channel-multipliers", "1,0"], ("argument --channel-multipliers: expected comma-separated integers >= 1",)),
    (["--num-timesteps", "0"], ("argument --num-timesteps: expected an integer >= 1, got '0'",)),
    (["--epochs", "0"], ("argument --epochs: expected an integer >= 1, got '0'",)),
    (["--seed", "-1"], ("argument --seed: expected an integer >= 0, got '-1'",)),
    (["--lr", "0"], ("argument --lr: expected a finite number > 0, got '0'",)),
    (["--lr", "nan"], ("argument --lr: expected a finite number > 0, got 'nan'",)),
    (["--prob-uncond", "1.5"], ("argument --prob-uncond: expected a number in [0, 1), got '1.5'",)),
    (["--guidance-scale", "inf"], ("argument --guidance-scale: expected a finite number, got 'inf'",)),
    (["--ema-decay", "-0.5"], ("argument --ema-decay: expected a number in [0, 1), got '-0.5'",)),
    (["--ema-decay", "1"], ("argument --ema-decay: expected a number in [0, 1), got '1'",)),
    (["--min-snr-gamma", "-1"], ("argument --min-snr-gamma: expected a finite number >= 0, got '-1'",)),
    (["--eta", "2"], ("argument --eta: expected a number in [0, 1], got '2'",)),
    (["--ddim-steps", "0"], ("argument --ddim-steps: expected an integer >= 1, got '0'",)),
    (["--ddim-steps", "200"], ("--ddim-steps: expected an integer in [1, 100] (--num-timesteps), got 200",)),
    (["--fld-draws", "0"], ("argument --fld-draws: expected an integer >= 1, got '0'",)),
    (["--model-channels", "6"], ("--model-channels / --channel-multipliers:", "groups=8 must divide")),
    (["--schedule", "linear", "--num-timesteps", "10"], ("--schedule / --num-timesteps:",
                                                         "every beta must lie in (0, 1)")),
]


@pytest.mark.parametrize("argv, fragments", MNIST_BAD)
def test_mnist_flags_checked_at_parse_time(mnist, tmp_path, capsys, argv, fragments):
    out = tmp_path / "run"
    refused(mnist.main, argv + ["--out", str(out), "--no-progress"], capsys, *fragments)
    assert not out.exists()


def test_mnist_num_timesteps_zero_blames_num_timesteps(mnist, capsys):
    """--num-timesteps 0 used to be reported as a bad --guidance-interval."""
    err = refused(mnist.main, ["--num-timesteps", "0", "--conditional"], capsys, "--num-timesteps")
    assert "guidance-interval" not in err.splitlines()[-1]


def test_mnist_paths_checked_at_parse_time(mnist, tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    refused(mnist.main, ["--out", str(a_file)], capsys, f"argument --out: expected a directory to write into, "
                                                        f"got the file '{a_file}'")
    refused(mnist.main, ["--judge", str(tmp_path)], capsys, f"argument --judge: expected a file path for the judge "
                                                            f"checkpoint, got the directory '{tmp_path}'")
    refused(mnist.main, ["--data-dir", str(tmp_path / "missing")], capsys,
            f"argument --data-dir: expected an existing directory, got '{tmp_path / 'missing'}'")


def test_mnist_good_flags_parse(mnist):
    args = mnist.parse_args(["--channel-multipliers", "1,2", "--max-train", "5", "--ema-decay", "0",
                             "--min-snr-gamma", "0", "--model-channels", "8"])
    assert args.channel_multipliers == (1, 2) and args.max_train == 5 and args.ema_decay == 0.0
    assert args.min_snr_gamma is None and args.model_channels == 8
    assert mnist.parse_args([]).channel_multipliers == (1, 2, 3)


SPIRAL_BAD = [
    (["--samples", "0"], ("argument --samples: expected an integer >= 1, got '0'",)),
    (["--ema-decay", "-0.5"], ("argument --ema-decay: expected a number in [0, 1), got '-0.5'",)),
    (["--seed", "-1"], ("argument --seed: expected an integer >= 0, got '-1'",)),
    (["--n-points", "0"], ("argument --n-points: expected an integer >= 1, got '0'",)),
    (["--data-noise", "-1"], ("argument --data-noise: expected a finite number >= 0, got '-1'",)),
    (["--num-timesteps", "0"], ("argument --num-timesteps: expected an integer >= 1, got '0'",)),
    (["--d-hid", "3"], ("argument --d-hid: expected an even integer >= 4, got '3'",)),
    (["--epochs", "0"], ("argument --epochs: expected an integer >= 1, got '0'",)),
    (["--batch-size", "0"], ("argument --batch-size: expected an integer >= 1, got '0'",)),
    (["--lr", "-1"], ("argument --lr: expected a finite number > 0, got '-1'",)),
    (["--checkpoint-every", "0"], ("argument --checkpoint-every: expected an integer >= 1, got '0'",)),
    (["--eta", "-0.1"], ("argument --eta: expected a number in [0, 1], got '-0.1'",)),
    (["--ddim-steps", "41"], ("--ddim-steps: expected an integer in [1, 40] (--num-timesteps), got 41",)),
    (["--num-timesteps", "10", "--beta-end", "0.02"], ("--schedule / --num-timesteps / --beta-start / --beta-end:",
                                 "every beta must lie in (0, 1)")),
    (["--beta-start", "-1"], ("--schedule / --num-timesteps / --beta-start / --beta-end:",)),
]


@pytest.mark.parametrize("argv, fragments", SPIRAL_BAD)
def test_spiral_flags_checked_at_parse_time(spiral, tmp_path, capsys, argv, fragments):
    out = tmp_path / "run"
    refused(spiral.main, argv + ["--out", str(out), "--no-progress"], capsys, *fragments)
    assert not out.exists()


def test_spiral_ema_decay_zero_still_turns_ema_off(spiral):
    assert spiral.parse_args(["--ema-decay", "0"]).ema_decay == 0.0


@pytest.fixture
def judge(monkeypatch):
    for name in ("load_data", "train_judge"):
        monkeypatch.setattr(judge_module, name, _no_work)
    return judge_module


def test_judge_out_directory_refused_before_training(judge, tmp_path, capsys):
    """`--out DIR` used to train the judge, then fail to save it and lose it."""
    refused(judge.main, ["--out", str(tmp_path)], capsys,
            f"argument --out: expected a file path for the checkpoint, got the directory '{tmp_path}'")


def test_build_judge_refuses_a_directory_before_training(judge, tmp_path):
    with pytest.raises(ValueError, match="out: expected a file path for the checkpoint, got the directory"):
        judge.build_judge(out=str(tmp_path), progress=False, log=None)


def test_judge_out_under_a_file_refused(judge, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    refused(judge.main, ["--out", str(tmp_path / "file" / "judge.h5")], capsys,
            f"argument --out: expected a path in a writable directory, got '{tmp_path / 'file' / 'judge.h5'}'")


@pytest.mark.parametrize("argv, fragment", [
    (["--epochs", "0"], "argument --epochs: expected an integer >= 1, got '0'"),
    (["--batch-size", "0"], "argument --batch-size: expected an integer >= 1, got '0'"),
    (["--lr", "0"], "argument --lr: expected a finite number > 0, got '0'"),
    (["--seed", "-2"], "argument --seed: expected an integer >= 0, got '-2'"),
    (["--data-dir", "/nonexistent/minidiff"], "argument --data-dir: expected an existing directory"),
])
def test_judge_flags_checked_at_parse_time(judge, capsys, argv, fragment):
    refused(judge.main, argv, capsys, fragment)
