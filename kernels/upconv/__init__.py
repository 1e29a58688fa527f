"""Nearest x2 upsampling followed by a 3x3 conv, fused: four 2x2 convs on the small image.

    phases.py      the 2x2 phase weights from the 3x3 ones (plain xp, shared)
    reference.py   the two steps as they are (upsample, then the 3x3 reference conv)
    cpu.py         the four phase convs on padded lines (Numba)
    lanes.py       the same on image lanes (OnLines in and out)
    cuda.py        one thread per output pixel (Numba CUDA)
"""
