"""The model as the few-step samplers call it: its (guided) output at a timestep, and the timesteps' noise levels.

A sampler sees the model only through `Denoiser`: `out = denoiser(x, t)` is the
model's raw output (a prediction of eps, x0 or v, whatever the objective), with
classifier-free guidance at the scale `scale_at(s, interval, t)` (guidance.py);
the kernels turn it into x0_hat (clipped when `clip`) inside the fused update.
`abar(t)` and `log_snr(t)` are the float64 noise levels of timestep t, with
t = -1 the clean data (abar = 1, lambda = +inf). `evaluations` counts the model
calls (a guided call on the doubled batch counts once).
"""
from ...backend import randn
from ..guidance import guided_forward, scale_at


class Denoiser:
    """Denoiser(diffusion, labels, guidance_scale, guidance_interval, clip): call it as out = denoiser(x, t)."""

    def __init__(self, diffusion, labels=None, guidance_scale=1.0, guidance_interval=None, clip=True):
        self.model, self.objective, self.clip = diffusion.model, diffusion.objective, bool(clip)
        self.alphas_cumprod = diffusion._buffers64["alphas_cumprod"]        # (T,) float64, on the host
        self.labels, self.guidance_scale, self.guidance_interval = labels, guidance_scale, guidance_interval
        self.xp = diffusion.xp
        self.evaluations = 0

    def __call__(self, x, t):
        """The model's output at (x (B, ...), int t), guided as set.   -> (B, ...)"""
        B = x.shape[0]
        out = guided_forward(self.model, x, self.xp.full((B,), t, dtype=self.xp.int64), self.labels,
                             scale_at(self.guidance_scale, self.guidance_interval, t))
        if tuple(out.shape) != tuple(x.shape):
            raise ValueError(f"model output: expected shape {tuple(x.shape)}, got {tuple(out.shape)}")
        self.evaluations += 1
        return out

    def abar(self, t):
        """abar_t as a host float; abar_{-1} = 1."""
        return 1.0 if t < 0 else float(self.alphas_cumprod[t])

    def log_snr(self, t):
        """lambda_t = log(alpha_t / sigma_t); +inf at t = -1."""
        from ...kernels.sampling.solvers import log_snr
        return log_snr(self.abar(t))


def noise_source(rng, shape, dtype, xp):
    """A callable drawing z ~ N(0, I) of `shape` from the host Generator `rng` (backend.randn)."""
    return lambda: randn(rng, shape, dtype, xp)

