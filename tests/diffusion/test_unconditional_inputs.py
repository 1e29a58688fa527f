"""An unconditional model refuses labels and a guidance scale before any work (issue 20, item 8)."""
import numpy as np
import pytest

from minidiff.diffusion import GaussianDiffusion
from minidiff.models import MLP
from minidiff.optim import Adam
from minidiff.train import train


class CountingMLP(MLP):
    calls = 0

    def forward(self, x, t, labels=None):
        CountingMLP.calls += 1
        return super().forward(x, t, labels)


def _diffusion():
    CountingMLP.calls = 0
    return GaussianDiffusion(CountingMLP(d_hid=8, num_timesteps=10), 10, schedule="cosine", data_shape=(2,))


@pytest.mark.parametrize("sample", [
    lambda d, **kw: d.p_sample_loop((4, 2), progress=False, **kw),
    lambda d, **kw: d.ddim_sample_loop((4, 2), sampling_timesteps=5, progress=False, **kw),
    lambda d, **kw: d.sample((4, 2), sampler="dpmpp_2m", steps=5, progress=False, **kw),
])
def test_labels_and_a_guidance_scale_are_refused_before_any_model_call(sample):
    d = _diffusion()
    with pytest.raises(ValueError, match="unconditional"):
        sample(d, labels=np.ones(4, np.int64))
    with pytest.raises(ValueError, match="without labels"):
        sample(d, guidance_scale=2.0)
    assert CountingMLP.calls == 0
    assert sample(d).shape == (4, 2) and CountingMLP.calls > 0             # and without them it samples


def test_the_mlp_itself_refuses_labels():
    with pytest.raises(ValueError, match="unconditional"):
        MLP(d_hid=8, num_timesteps=10).forward(np.zeros((3, 2), np.float32), np.zeros(3, np.int64),
                                               np.ones(3, np.int64))


def test_train_refuses_labels_for_an_unconditional_model_before_any_step():
    d = _diffusion()
    theta = d.model.flat()[0].copy()
    with pytest.raises(ValueError, match="unconditional"):
        train(d, np.zeros((8, 2), np.float32), labels=np.ones(8, np.int64), epochs=1, batch_size=4,
              optimizer=Adam(d.model), progress=False)
    assert CountingMLP.calls == 0 and np.array_equal(d.model.flat()[0], theta)
