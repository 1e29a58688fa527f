"""Adam's (and AdamW's) update of the flat parameter vector in one pass.

    reference.py   plain xp, with the bias-corrected scalars all three share
    cpu.py         chunks of the vector per loop iteration (Numba)
    cuda.py        one thread per parameter (Numba CUDA)
"""
