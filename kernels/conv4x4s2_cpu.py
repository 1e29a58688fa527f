"""Direct 4x4 stride-2 padding-1 convolution on the CPU (Numba): the U-Net's downsampling.

A stride-2 window reads every other input pixel, so the flat-line trick of
conv3x3_cpu.py (read that first: each tap a fixed offset along a zero-padded
flat grid) does not apply as it is. Splitting the padded input into its four
phases (space to depth),

    q[b, (c, a, e), u*Wq + v] = x_pad[b, c, 2u + a, 2v + e]      a, e in {0, 1},

turns the 4x4 stride-2 convolution into a 2x2 stride-1 one over 4*Cin
phase channels (tap (i, j) of the 4x4 kernel is phase (i % 2, j % 2), offset
(i // 2, j // 2)):

    y[o, oh*Wq + ow] = sum_{c,a,e,i',j'} w[o, c, 2i'+a, 2j'+e] q[(c,a,e), (oh+i')*Wq + ow+j']

with Wq = Wo + 1. Here each (sample, channel) plane is its own flat grid of
Ho rows of length Wq (rounded up to ALIGN), with grid_lengths, pad_planes
and crop_grid below. The backward pass uses the same two kernels:
    dx: phase (a, e) of dx_pad is a 2x2 convolution of the zero-padded dy
        with the flipped taps w[o, c, 2(1-i)+a, 2(1-j)+e]; the phases are then
        put back in place (depth to space);
    dw: four dot products per (o, phase channel) between dy on the grid
        and the shifted phase plane.
"""
import numpy as np
from numba import njit, prange

from . import numba_threads  # noqa: F401  (selects the threading layer first)
from .conv3x3_cpu import copy_plane
from .scratch import scratch

ALIGN = 64      # grid length P is rounded up to this (as in conv3x3_cpu.py)


def grid_lengths(rows, R, k):
    """(P, L) for a k x k kernel on a grid of `rows` rows of length R: the grid length
    (>= rows*R, a multiple of ALIGN) and the plane length (the last tap of the last grid
    point reads index P-1 + (k-1)*(R+1))."""
    P = -(-rows * R // ALIGN) * ALIGN
    return P, P + (k - 1) * (R + 1)


# Loop mapping: prange over (b, c) planes; each iteration zeroes and fills its
# own plane xp[b, c], so iterations write disjoint memory.
@njit(parallel=True, cache=True)
def pad_planes(x, Wp, xp):
    """xp[b, c, (h+1)*Wp + w+1] = x[b, c, h, w], zero elsewhere:  (B, C, H, W) -> (B, C, Lp)."""
    B, C, H, W = x.shape
    for bc in prange(B * C):
        b, c = bc // C, bc % C
        xp[b, c, :] = 0
        for h in range(H):
            o = (h + 1) * Wp + 1
            xp[b, c, o:o + W] = x[b, c, h, :]
    return xp


# Loop mapping: prange over (b, o) planes; each copies the H rows of W real
# values out of its grid row (dropping pad columns and tail) and adds the bias.
@njit(parallel=True, cache=True)
def crop_grid(grid, Wp, bias, y):
    """y[b, o, h, w] = grid[b, o, h*Wp + w] + bias[o]:  (B, C, P) -> (B, C, H, W)."""
    B, C = y.shape[:2]
    for bc in prange(B * C):
        b, o = bc // C, bc % C
        copy_plane(grid[b, o], 0, Wp, bias[o], y[b, o])
    return y


def output_size(H, W):
    """(Ho, Wo) of a 4x4 stride-2 padding-1 convolution."""
    return (H - 2) // 2 + 1, (W - 2) // 2 + 1


# Loop mapping: prange over (b, c); iteration (b, c) writes the four phase
# planes of channel c of sample b. Each phase pixel reads one padded pixel.
@njit(parallel=True, cache=True)
def space_to_depth(x, Ho, Wo, q):
    """q[b, 4c + 2a + e, u*Wq + v] = x[b, c, 2u + a - 1, 2v + e - 1] (0 off the edge), Wq = Wo + 1."""
    B, C, H, W = x.shape
    Wq = Wo + 1
    for bc in prange(B * C):
        b, c = bc // C, bc % C
        for a in range(2):
            for e in range(2):
                plane = q[b, 4 * c + 2 * a + e]
                plane[:] = 0
                for u in range(Ho + 1):
                    h = 2 * u + a - 1
                    if 0 <= h < H:
                        for v in range(Wo + 1):
                            w = 2 * v + e - 1
                            if 0 <= w < W:
                                plane[u * Wq + v] = x[b, c, h, w]
    return q


# Loop mapping: prange over (b, c); the inverse of space_to_depth for the
# gradient: each pixel of dx[b, c] is read from the one phase plane holding it.
@njit(parallel=True, cache=True)
def depth_to_space(dq, R, dx):
    """dx[b, c, h, w] = dq[b, 4c + 2a + e, u*R + v] with h = 2u + a - 1, w = 2v + e - 1."""
    B, C, H, W = dx.shape
    for bc in prange(B * C):
        b, c = bc // C, bc % C
        for h in range(H):
            u, a = (h + 1) // 2, (h + 1) % 2
            for w in range(W):
                v, e = (w + 1) // 2, (w + 1) % 2
                dx[b, c, h, w] = dq[b, 4 * c + 2 * a + e, u * R + v]
    return dx


# Loop mapping: prange over (b, quad of output channels); iteration (b, o)
# owns the grid rows y[b, o..o+3]. For each input channel: four shifted
# loads of the plane feed sixteen multiply-adds.
@njit(parallel=True, fastmath={"contract"}, cache=True)
def conv2x2_grid(q, w, R, P, y):
    """y[b, m, p] = sum_{k,i,j} w[m, k, i, j] * q[b, k, p + i*R + j], p < P.

    q (B, K, L) planes, w (M, K, 2, 2), y (B, M, P) the output grid.
    """
    B, K, _ = q.shape
    M = w.shape[0]
    quads = (M + 3) // 4
    r1, u1 = np.uint64(R), np.uint64(1)
    zeros = np.zeros_like(w[0])                                     # (K, 2, 2)
    for it in prange(B * quads):
        b, m0 = it // quads, 4 * (it % quads)
        # past the last channel the quad computes zeros into channel m0 (harmless)
        m1, m2, m3 = min(m0 + 1, M - 1), min(m0 + 2, M - 1), min(m0 + 3, M - 1)
        w0 = w[m0]
        w1 = w[m1] if m0 + 1 < M else zeros
        w2 = w[m2] if m0 + 2 < M else zeros
        w3 = w[m3] if m0 + 3 < M else zeros
        y0, y1, y2, y3 = y[b, m0], y[b, m1], y[b, m2], y[b, m3]
        y0[:] = 0
        y1[:] = 0
        y2[:] = 0
        y3[:] = 0
        for k in range(K):
            x = q[b, k]
            a00, a01, a10, a11 = w0[k, 0, 0], w0[k, 0, 1], w0[k, 1, 0], w0[k, 1, 1]
            b00, b01, b10, b11 = w1[k, 0, 0], w1[k, 0, 1], w1[k, 1, 0], w1[k, 1, 1]
            c00, c01, c10, c11 = w2[k, 0, 0], w2[k, 0, 1], w2[k, 1, 0], w2[k, 1, 1]
            d00, d01, d10, d11 = w3[k, 0, 0], w3[k, 0, 1], w3[k, 1, 0], w3[k, 1, 1]
            for p in range(np.uint64(P)):
                x00, x01, x10, x11 = x[p], x[p + u1], x[p + r1], x[p + r1 + u1]
                y0[p] += (a00 * x00 + a01 * x01) + (a10 * x10 + a11 * x11)
                y1[p] += (b00 * x00 + b01 * x01) + (b10 * x10 + b11 * x11)
                y2[p] += (c00 * x00 + c01 * x01) + (c10 * x10 + c11 * x11)
                y3[p] += (d00 * x00 + d01 * x01) + (d10 * x10 + d11 * x11)
    return y


# Loop mapping: prange over (b, m); iteration (b, m) writes its own partial
# sums dw_b[b, m] (summed over b afterwards). For each plane k: four dot
# products over the grid; fastmath lets LLVM split them across vector lanes.
@njit(parallel=True, fastmath=True, cache=True)
def conv2x2_weight_grad(q, g, R, P, g0, dw_b):
    """dw_b[b, m, k, 2i + j] = sum_p g[b, m, p + g0] * q[b, k, p + i*R + j], p < P."""
    B, K, _ = q.shape
    M = g.shape[1]
    r1, u1, g0 = np.uint64(R), np.uint64(1), np.uint64(g0)
    zero = dw_b.dtype.type(0)
    for it in prange(B * M):
        b, m = it // M, it % M
        gm = g[b, m]
        for k in range(K):
            x = q[b, k]
            s00 = s01 = s10 = s11 = zero
            for p in range(np.uint64(P)):
                d = gm[p + g0]
                s00 += d * x[p]
                s01 += d * x[p + u1]
                s10 += d * x[p + r1]
                s11 += d * x[p + r1 + u1]
            s = dw_b[b, m, k]
            s[0], s[1], s[2], s[3] = s00, s01, s10, s11
    return dw_b


def is_4x4_stride2(kh, kw, sh, sw, ph, pw):
    """True for the convolution these kernels cover: 4x4, stride 2, padding 1."""
    return kh == kw == 4 and sh == sw == 2 and ph == pw == 1


def phase_weights(w):
    """w (Cout, Cin, 4, 4) -> (Cout, 4*Cin, 2, 2): [o, 4c + 2a + e, i, j] = w[o, c, 2i + a, 2j + e]."""
    Cout, Cin = w.shape[:2]
    w6 = w.reshape(Cout, Cin, 2, 2, 2, 2)                    # (o, c, i, a, j, e)
    return np.ascontiguousarray(w6.transpose(0, 1, 3, 5, 2, 4).reshape(Cout, 4 * Cin, 2, 2))


def _phases(x):
    """(q, Ho, Wo, Wq, P, L): the phase planes of x (B, 4Cin, L) and their grid geometry."""
    B, Cin, H, W = x.shape
    Ho, Wo = output_size(H, W)
    Wq = Wo + 1
    P, L = grid_lengths(Ho, Wq, 2)
    q = space_to_depth(x, Ho, Wo, scratch("q", (B, 4 * Cin, L), x.dtype))       # (B, 4Cin, L)
    return q, Ho, Wo, Wq, P, L


def conv4x4s2_forward_cpu(x, w, bias):
    """y = conv4x4 stride 2 padding 1 (x, w) + bias:  x (B, Cin, H, W) -> y (B, Cout, Ho, Wo)."""
    B, Cout = x.shape[0], w.shape[0]
    q, Ho, Wo, Wq, P, _ = _phases(x)
    grid = conv2x2_grid(q, phase_weights(w), Wq, P, scratch("grid", (B, Cout, P), x.dtype))
    return crop_grid(grid, Wq, bias, np.empty((B, Cout, Ho, Wo), x.dtype))


def conv4x4s2_backward_cpu(dy, x, w, need_bias=True):
    """(dx, dw, db) of conv4x4s2_forward_cpu; db is None unless need_bias."""
    B, Cin = x.shape[:2]
    Cout = w.shape[0]
    q, Ho, Wo, Wq, P, L = _phases(x)
    # dw: dy on the forward grid (row length Wq), stored padded so junk columns read 0
    dyg = pad_planes(dy, Wq, scratch("dyp", (B, Cout, L + Wq), x.dtype))       # dy[h, w] at (h+1)Wq + w+1
    dw_b = conv2x2_weight_grad(q, dyg, Wq, P, Wq + 1, scratch("dw_b", (B, Cout, 4 * Cin, 4), x.dtype))
    dw6 = dw_b.sum(axis=0).reshape(Cout, Cin, 2, 2, 2, 2)                    # (o, c, a, e, i, j)
    dw = dw6.transpose(0, 1, 4, 2, 5, 3).reshape(w.shape)                    # (o, c, 2i+a, 2j+e)
    # dx: each phase is a 2x2 convolution of dy padded by 1, with the taps flipped
    Wd = Wo + 2
    Pd, Ld = grid_lengths(Ho + 1, Wd, 2)
    dyp = pad_planes(dy, Wd, scratch("dyp", (B, Cout, Ld), x.dtype))          # (B, Cout, Ld)
    w_dx = np.ascontiguousarray(phase_weights(w)[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))  # (4Cin, Cout, 2, 2)
    dq = conv2x2_grid(dyp, w_dx, Wd, Pd, scratch("q", (B, 4 * Cin, Pd), x.dtype))   # q is done with
    dx = depth_to_space(dq, Wd, np.empty_like(x))                             # (B, Cin, H, W)
    db = dy.sum(axis=(0, 2, 3)) if need_bias else None                        # (Cout,)
    return dx, dw, db
