import pytest


@pytest.fixture
def fake_gpu(monkeypatch):
    """'cuda' means the CuPy-like test backend (tests/fakecupy.py, which refuses implicit host <-> device
    copies): an example's GPU path runs here, on the reference kernels (patch its cuda_unavailable_reason)."""
    from fakecupy import xp
    from minidiff import backend
    from minidiff.diffusion import gaussian
    from minidiff.nn import layer
    real = backend.device_module

    def device_module(device):
        return xp if device in ("cuda", "gpu", "cupy") else real(device)
    for module in (backend, gaussian, layer):
        monkeypatch.setattr(module, "device_module", device_module)
    return xp
