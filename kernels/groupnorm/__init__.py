"""GroupNorm + per-(sample, channel) shift + SiLU (+ a residual add), fused into one pass each way.

    reference.py   plain xp, with the argument checks the kernels share
    cpu.py         one (sample, group) per loop iteration (Numba)
    cpu_lines.py   the same, reading a conv's output grid and writing padded lines / image lanes
    lanes.py       the layer on image lanes (OnLines in and out), on cpu_lines.py's kernels
    cuda.py        one block per (sample, group), block-wide sums (Numba CUDA)
"""
