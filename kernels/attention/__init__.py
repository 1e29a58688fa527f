"""Multi-head attention softmax(q k^T / sqrt(d)) v on packed qkv (B, N, 3C).

    reference.py   plain xp (batched matmuls), with the shared argument checks
    cpu.py         one (sample, head) per loop iteration (Numba)
    cuda.py        one thread per (sample, head, query) row (Numba CUDA)
"""
