"""Convolution shapes shared by the conv layer's and the conv kernels' tests."""

# (B, Cin, Cout, H, W, kernel, stride, padding)
CASES = [
    (2, 2, 3, 5, 5, 3, 1, 1),           # 3x3 same
    (2, 2, 3, 8, 8, 4, 2, 1),           # U-Net downsampling
    (2, 2, 3, 7, 7, 4, 2, 1),           # ... on an odd size
    (2, 3, 2, 4, 4, 1, 1, 0),           # 1x1
    (1, 2, 2, 7, 7, 5, 1, 0),           # LeNet 5x5
    (2, 2, 3, 5, 6, (3, 2), 1, (1, 0)),  # non-square kernel and input
    (2, 2, 2, 7, 6, 3, 2, 0),           # stride 2, no padding
    (1, 2, 2, 6, 7, (2, 3), (2, 1), (0, 1)),  # everything a pair
]
BIG_C_CASES = [                          # >= 8 input channels: the per-offset GEMM path
    (2, 9, 3, 5, 5, 3, 1, 1),
    (1, 8, 2, 7, 7, 4, 2, 1),
]
