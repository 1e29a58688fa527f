"""The MLP denoiser for 2-D data (DenoisingDiffusion.jl's spiral model).

    x (B, 2), t (B,) -> eps_hat (B, 2)

    h = act(Dense(x) + Dense(sinusoid(t)))      repeated `num_layers` times
    out = Dense(h)
"""
import numpy as np

from ..backend import as_rng, get_xp
from ..nn import ConditionalChain, ConditionalSum, Dense, GELU, ReLU, Sequential, SiLU
from ..nn import SinusoidalPositionEmbedding
from .inputs import check_seed, check_x, index_array

ACTIVATIONS = {"swish": SiLU, "silu": SiLU, "gelu": GELU, "relu": ReLU}


class MLP(ConditionalChain):
    """MLP(in_dim=2, d_hid=32, num_timesteps=40, num_layers=3, activation="swish").

    forward(x, t): x (B, in_dim), t (B,) integers in [0, num_timesteps - 1]. Unconditional
    (num_classes = None): labels are refused, by the diffusion before any work and here.
    """
    num_classes = None                          # unconditional: GaussianDiffusion refuses labels

    def __init__(self, in_dim=2, d_hid=32, num_timesteps=40, num_layers=3,
                 activation="swish", seed=0, dtype=np.float32):
        if activation not in ACTIVATIONS:
            raise ValueError(f"MLP: activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        for name, v in (("in_dim", in_dim), ("d_hid", d_hid), ("num_timesteps", num_timesteps),
                        ("num_layers", num_layers)):
            if int(v) != v or v < 1:
                raise ValueError(f"MLP: {name} must be a positive integer, got {v!r}")
        if d_hid % 2 or d_hid < 4:
            raise ValueError(f"MLP: d_hid must be even and >= 4 (sinusoidal embedding), got {d_hid!r}")
        check_seed(seed, "MLP")
        rng = as_rng(seed)
        layers = []
        width = in_dim
        for _ in range(num_layers):
            time_branch = Sequential(SinusoidalPositionEmbedding(num_timesteps, d_hid, dtype=dtype),
                                     Dense(d_hid, d_hid, rng=rng, dtype=dtype))
            layers += [ConditionalSum(Dense(width, d_hid, rng=rng, dtype=dtype), time_branch),
                       ACTIVATIONS[activation]()]
            width = d_hid
        layers.append(Dense(d_hid, in_dim, rng=rng, dtype=dtype))
        super().__init__(*layers)
        self.config = dict(in_dim=int(in_dim), d_hid=int(d_hid), num_timesteps=int(num_timesteps),
                           num_layers=int(num_layers), activation=activation, seed=int(seed))
        self.num_timesteps = int(num_timesteps)

    def forward(self, x, t, labels=None):
        if labels is not None:
            raise ValueError("MLP: labels given, but the MLP is unconditional (num_classes=None); "
                             "call it without labels")
        in_dim = self.config["in_dim"]
        check_x(x, "MLP", (in_dim,), str(in_dim))
        t = index_array(t, "MLP", "t", x.shape[0], self.num_timesteps - 1, get_xp(x))
        return super().forward(x, t)
