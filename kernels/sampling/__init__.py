"""The fused DDPM and DDIM reverse steps: x_t and eps_hat read once, x_prev and x0_hat written once.

    reference.py   plain xp, with the per-sample coefficients and argument handling all three share
    cpu.py         one sample per loop iteration (Numba)
    cuda.py        one thread per element (Numba CUDA)

The model every operation folder follows: shared coefficients in the reference, tiny kernels.
"""
