"""minidiff: denoising diffusion (DDPM, DDIM) from scratch with hand-written backprop."""
__version__ = "0.1.0"
