"""nn.no_grad() (minidiff/nn/grad_mode.py): switches gradient keeping off in its block and
restores it after, also after an exception."""
import pytest

from minidiff.nn import grad_enabled, no_grad


def test_no_grad_restores_the_mode():
    assert grad_enabled()
    with no_grad():
        assert not grad_enabled()
        with no_grad():
            assert not grad_enabled()
        assert not grad_enabled()
    assert grad_enabled()
    with pytest.raises(KeyError):
        with no_grad():
            raise KeyError("inside")
    assert grad_enabled()
