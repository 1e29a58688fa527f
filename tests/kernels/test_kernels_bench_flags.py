"""`python -m minidiff.kernels.bench` checks --repeat and --batch when they are parsed."""
import pytest

from minidiff.kernels import bench


@pytest.mark.parametrize("argv, fragment", [(["--repeat", "0"], "argument --repeat: expected an integer >= 1, got '0'"),
                                            (["--batch", "x"], "argument --batch: expected an integer >= 1, got 'x'")])
def test_bad_flags_exit_before_any_timing(monkeypatch, capsys, argv, fragment):
    monkeypatch.setattr(bench, "medians", lambda *a, **k: pytest.fail("timing started before the flags were checked"))
    with pytest.raises(SystemExit) as e:
        bench.main(argv)
    assert e.value.code == 2 and fragment in capsys.readouterr().err
