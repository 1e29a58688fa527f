"""The fused reverse steps (DDPM, DDIM, and one step shared by DPM-Solver++, Euler, Heun and Euler
ancestral): x_t and the model output read once, x_prev and x0_hat written once.

    reference.py   plain xp, with the per-sample coefficients and argument handling all three share
    cpu.py         one sample per loop iteration (Numba)
    cuda.py        one thread per element (Numba CUDA)
    solvers.py     the coefficients of each few-step sampler's update, for the shared solver step

The model every operation folder follows: shared coefficients in the reference, tiny kernels.
"""
