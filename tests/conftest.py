import os
import sys

# tests import helpers (gradcheck.py) from this folder
sys.path.insert(0, os.path.dirname(__file__))

import pytest  # noqa: E402


@pytest.fixture(params=["auto", "lanes"])
def layout(request, monkeypatch):
    """The CPU conv kernels' layout (kernels/lines.py). 'auto': whatever lines.lanes()
    picks; 'lanes': 16 images side by side whenever the batch allows (B a multiple of
    16), whatever the channels."""
    if request.param == "lanes":
        lines = pytest.importorskip("minidiff.kernels.lines")
        monkeypatch.setattr(lines, "LANES_MIN_CHANNELS", 1)
    return request.param
