"""2-D convolution (cross-correlation, PyTorch layout). Read in this order:

    reference.py       im2col + GEMM in plain xp, split into one GEMM per kernel offset
    reference_3x3.py   the same GEMMs for 3x3 stride 1 padding 1, on padded lines (views, no copies)
    cpu.py             im2col + GEMM with Numba copies, any shape
    cpu_3x3.py         the direct 3x3 kernel on padded lines / image lanes: no im2col at all
    cpu_4x4s2.py       4x4 stride 2 as a 2x2 stride-1 conv over the input's four phases
    lanes.py           both, and their backward, on image lanes (OnLines in and out)
    cuda.py            im2col + a tiled GEMM (cuBLAS for large GEMMs on a real GPU)

ops.conv2d_forward / conv2d_backward pick one of them.
"""
