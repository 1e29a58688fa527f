"""`python -m minidiff.bench` checks its flags when they are parsed: --repeats 0 used to fall
back silently to the default, and a bad --json path surfaced only after the whole benchmark."""
import pytest

from minidiff.bench import cli


def _no_work(*args, **kwargs):
    raise AssertionError("work started before the flags were checked")


@pytest.fixture
def bench_main(monkeypatch):
    for name in ("run_case", "gemm_gflops", "import_torch", "conv_shape_rows", "profile_unet_train_step"):
        monkeypatch.setattr(cli, name, _no_work)
    return cli.main


@pytest.mark.parametrize("argv, fragment", [
    (["--repeats", "0"], "argument --repeats: expected an integer >= 1, got '0'"),
    (["--repeats", "0", "--conv-shapes"], "argument --repeats: expected an integer >= 1, got '0'"),
    (["--rounds", "0"], "argument --rounds: expected an integer >= 1, got '0'"),
    (["--pairs", "-1"], "argument --pairs: expected an integer >= 0, got '-1'"),
    (["--cases", "mlp_train_step,nope"], "--cases: unknown ['nope']"),
    (["--cases", ","], "argument --cases: expected comma-separated case names"),
])
def test_bad_flags_exit_before_any_work(bench_main, capsys, argv, fragment):
    with pytest.raises(SystemExit) as e:
        bench_main(argv)
    assert e.value.code == 2
    assert fragment in capsys.readouterr().err


def test_json_path_checked_before_any_work(bench_main, tmp_path, capsys):
    for path, fragment in ((tmp_path, f"argument --json: expected a file path, got the directory '{tmp_path}'"),
                           (tmp_path / "no" / "such" / "dir" / "rows.json", "argument --json: expected a path in a "
                                                                             "writable directory")):
        (tmp_path / "no").write_text("a file where a directory would be")
        with pytest.raises(SystemExit):
            bench_main(["--quick", "--json", str(path)])
        assert fragment in capsys.readouterr().err
