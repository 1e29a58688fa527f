"""The Numba CPU convolution (kernels/conv/cpu.py: im2col + GEMM, any shape) against the
im2col reference (kernels/conv/reference.py); and the face's CPU path, which sends the
3x3 stride-1 padding-1 and 4x4 stride-2 padding-1 shapes to the direct kernels
(conv/cpu_3x3.py, conv/cpu_4x4s2.py; tested on their own in test_conv_cpu_direct.py)."""
import numpy as np
import pytest

pytest.importorskip("numba")

import minidiff.kernels as K
from minidiff.kernels.check import check_kernel, conv_backward_case, conv_case
from minidiff.kernels.conv import cpu as conv_cpu
from minidiff.kernels.conv import reference as conv_reference
from minidiff.kernels.runtime.scratch import release_scratch

DTYPES = [np.float32, np.float64]
# (B, Cin, Cout, H, W, k, stride, padding): the U-Net / LeNet shapes, odd sizes, batch 1
CONV_SHAPES = [
    (2, 3, 4, 7, 7, 3, 1, 1),
    (1, 4, 6, 5, 9, 3, 1, 1),
    (2, 3, 5, 8, 8, 4, 2, 1),
    (1, 2, 3, 7, 7, 4, 2, 1),
    (3, 5, 2, 6, 5, 1, 1, 0),
    (2, 1, 6, 12, 12, 5, 1, 2),
    (2, 6, 4, 9, 9, 5, 1, 0),
    (1, 3, 2, 9, 8, (3, 2), (2, 1), (0, 2)),
]


def face_forward_reference(*args):
    """The face on the reference path: conv/reference_3x3.py for 3x3 s1 p1, else conv/reference.py."""
    with K.reference_mode():
        return K.conv2d_forward(*args)


def face_backward_reference(*args, **kwargs):
    with K.reference_mode():
        return K.conv2d_backward(*args, **kwargs)


# path -> (forward, backward, forward reference, backward reference): conv/cpu.py's im2col
# kernel for every shape; the face on NumPy arrays (the direct kernels for 3x3 s1 p1 and
# 4x4 s2 p1, im2col otherwise) against the face on the reference path
PATHS = {
    "im2col": (conv_cpu.conv2d_forward_cpu, conv_cpu.conv2d_backward_cpu,
               conv_reference.conv2d_forward_reference, conv_reference.conv2d_backward_reference),
    "face": (K.conv2d_forward, K.conv2d_backward, face_forward_reference, face_backward_reference),
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", CONV_SHAPES)
def test_conv_forward_matches_reference(shape, dtype, path):
    forward, _, forward_reference, _ = PATHS[path]
    rng = np.random.default_rng(0)
    y = check_kernel(forward, forward_reference, conv_case(rng, *shape, dtype=dtype))
    assert y.dtype == dtype and y.flags.c_contiguous


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", CONV_SHAPES)
def test_conv_backward_matches_reference(shape, dtype, path):
    _, backward, _, backward_reference = PATHS[path]
    rng = np.random.default_rng(1)
    dx, dw, db = check_kernel(backward, backward_reference, conv_backward_case(rng, *shape, dtype=dtype))
    assert dx.dtype == dw.dtype == db.dtype == dtype


@pytest.mark.parametrize("path", PATHS)
def test_conv_without_bias_and_without_bias_grad(path):
    forward, backward, forward_reference, backward_reference = PATHS[path]
    rng = np.random.default_rng(2)
    check_kernel(forward, forward_reference, conv_case(rng, 2, 3, 4, 6, 6, 3, 1, 1, bias=False))
    _, _, db = check_kernel(backward, backward_reference,
                            conv_backward_case(rng, 2, 3, 4, 6, 6, 3, 1, 1), {"need_bias": False})
    assert db is None


@pytest.mark.parametrize("dtype", DTYPES)
def test_im2col_col2im_match_reference(dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 7, 5)).astype(dtype)
    cols = check_kernel(conv_cpu.im2col, conv_reference.im2col, (x, 3, 3, 2, 1))
    check_kernel(conv_cpu.col2im, conv_reference.col2im, (cols, x.shape, 3, 3, 2, 1))


@pytest.mark.parametrize("block_bytes", [1, 2 * 27 * 36 * 4])       # 1, then 2 samples per block (B = 5)
def test_conv_in_sample_blocks_matches_reference(monkeypatch, block_bytes):
    """conv/cpu.py in blocks of samples (also on the 3x3 and 4x4 s2 shapes, which only the
    face sends to the direct kernels)."""
    monkeypatch.setattr(conv_cpu, "BLOCK_BYTES", block_bytes)
    rng = np.random.default_rng(6)
    assert len(conv_cpu._blocks(5, 3 * 9, 36, 4)) > 1
    check_kernel(conv_cpu.conv2d_forward_cpu, conv_reference.conv2d_forward_reference,
                 conv_case(rng, 5, 3, 4, 6, 6, 3, 1, 1))
    check_kernel(conv_cpu.conv2d_backward_cpu, conv_reference.conv2d_backward_reference,
                 conv_backward_case(rng, 5, 3, 4, 6, 6, 3, 1, 1))
    check_kernel(conv_cpu.conv2d_backward_cpu, conv_reference.conv2d_backward_reference,
                 conv_backward_case(rng, 5, 3, 4, 7, 7, 4, 2, 1, dtype=np.float64))


@pytest.mark.parametrize("path", PATHS)
def test_conv_accepts_non_contiguous_input(path):
    forward = PATHS[path][0]
    rng = np.random.default_rng(4)
    x, w, b, s, p = conv_case(rng, 2, 3, 4, 6, 6, 3, 1, 1)
    xt = np.swapaxes(np.swapaxes(x, 2, 3).copy(), 2, 3)               # same values, F-like strides
    assert not xt.flags.c_contiguous
    np.testing.assert_allclose(forward(xt, w, b, s, p),
                               conv_reference.conv2d_forward_reference(x, w, b, s, p), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("path", PATHS)
def test_outputs_do_not_alias_the_reused_work_arrays(path):
    forward, backward, forward_reference, _ = PATHS[path]
    rng = np.random.default_rng(12)
    args1 = conv_case(rng, 2, 3, 4, 6, 6, 3, 1, 1)
    y1 = forward(*args1)
    g1 = backward(rng.standard_normal(y1.shape).astype(np.float32), *args1[:2], 1, 1)
    kept = [a.copy() for a in (y1, *g1)]
    forward(*conv_case(rng, 3, 3, 4, 6, 6, 3, 1, 1))                   # reuses the buffers
    backward(*conv_backward_case(rng, 3, 3, 4, 6, 6, 3, 1, 1))
    for a, b in zip((y1, *g1), kept):
        np.testing.assert_array_equal(a, b)
    release_scratch()
    check_kernel(forward, forward_reference, args1)


def test_conv_rejects_bad_input():
    x = np.zeros((1, 3, 5, 5), np.float32)
    with pytest.raises(ValueError, match="channels"):
        conv_cpu.conv2d_forward_cpu(x, np.zeros((2, 4, 3, 3), np.float32), None, 1, 1)
    with pytest.raises(TypeError, match="float32 or float64"):
        conv_cpu.conv2d_forward_cpu(x.astype(np.int32), np.zeros((2, 3, 3, 3), np.int32), None, 1, 1)
    with pytest.raises(ValueError, match="dy has shape"):
        conv_cpu.conv2d_backward_cpu(np.zeros((1, 2, 4, 4), np.float32), x,
                                     np.zeros((2, 3, 3, 3), np.float32), 1, 1)
