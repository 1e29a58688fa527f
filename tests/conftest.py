import os
import sys

# tests in every subfolder import helpers (gradcheck.py, fakecupy.py, mnist_files.py) from this folder
sys.path.insert(0, os.path.dirname(__file__))

import pytest  # noqa: E402


@pytest.fixture(params=["auto", "lanes"])
def layout(request, monkeypatch):
    """The CPU conv kernels' layout (kernels/lines/geometry.py). 'auto': whatever
    geometry.lanes() picks; 'lanes': 16 images side by side whenever the batch allows
    (B a multiple of 16), whatever the channels."""
    if request.param == "lanes":
        geometry = pytest.importorskip("minidiff.kernels.lines.geometry")
        monkeypatch.setattr(geometry, "LANES_MIN_CHANNELS", 1)
    return request.param
