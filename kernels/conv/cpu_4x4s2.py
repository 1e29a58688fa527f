"""Direct 4x4 stride-2 padding-1 convolution on the CPU (Numba): the U-Net's downsampling.

Read conv/cpu_3x3.py first: there each tap is a fixed offset along one
zero-padded line per channel holding the whole batch. A stride-2 window reads
every other input pixel, so that does not apply as it is. Splitting the
padded input into its four phases (space to depth),

    q[(c, a, e), u, v] = x_pad[c, 2u + a, 2v + e]      a, e in {0, 1},  u <= Ho, v <= Wo,

turns the 4x4 stride-2 convolution into a 2x2 stride-1 one over 4*Cin phase
channels: tap (i, j) of the 4x4 kernel is phase (i % 2, j % 2) at offset
(i // 2, j // 2),

    y[o, oh, ow] = sum_{c,a,e,i',j'} w[o, c, 2i'+a, 2j'+e] q[(c,a,e), oh+i', ow+j'].

Memory layout: the phase planes of all B images, (Ho + 1) rows of
R = Wo + 1 values each, lie one after the other on one line per phase channel,

    q[(c, a, e), (b*(Ho+1) + u)*R + v],

which is the grid of geometry.line_geometry(B, Ho, Wo): the output
y[b, o, oh, ow] is grid point p = (b*(Ho+1) + oh)*R + ow, its taps are
p + i'*R + j', and the zeros of the padding are already in the phases (the
last row and column of the grid are junk, dropped by from_line). The backward
pass stays on the same grid:
    dw[o, (c,a,e), i', j'] = sum_p dyl[o, p + R + 1] * q[(c,a,e), p + i'R + j'] with
        dyl = to_line(dy) (zero at the junk points), a partial sum per chunk;
    dq = the 2x2 kernel on dyl with the taps flipped and channels swapped:
        dq[(c,a,e), p] = sum_{o,i',j'} w[o, c, 2(1-i')+a, 2(1-j')+e] dyl[o, p + i'R + j'],
        which is the gradient of every phase pixel (the zero row and column
        of dyl are the padding that the adjoint needs); depth to space then
        puts each phase pixel back in its place in dx.

With 16 images side by side per point (the lanes of lines/geometry.py, when
geometry.lanes() picks them), the same holds with every index times V and
pixel (b, c, h, w) in lane b % V of its point: q[(c, a, e), ((g*(Ho+1) + u)*R + v)*V + lane],
b = g*V + lane; the taps are p + i'*row + j'*col (row = R*V, col = V).

Until 26e203e (2026-12-01) each image had its own padded plane, so at
14x14 -> 7x7 the inner loop was 4 vectors long. Against that, in one process
over 41 alternating calls (batch 32): forward + backward 0.72-0.73x the time
at 16->16 28x28 and at 16->32 14x14.
"""
import numpy as np
from numba import njit, prange

from ..runtime import numba_threads  # noqa: F401  (selects the threading layer first)
from .cpu_3x3 import CHUNK, chunks, grid_rows, steps
from .reference_3x3 import flip_taps
from ..lines.geometry import LANES, from_lines, lines, to_lines
from ..runtime.scratch import scratch


def output_size(H, W):
    """(Ho, Wo) of a 4x4 stride-2 padding-1 convolution."""
    return (H - 2) // 2 + 1, (W - 2) // 2 + 1


# Where pixel x[b, c, h, w] goes: h = 2u + a - 1 and w = 2v + e - 1 give its
# phase (a, e) and its place (u, v) in the phase plane. Row h thus fills row
# u = (h + 1) // 2 of two phase planes: its even columns w = 2v phase e = 1 at
# column v, its odd columns w = 2v - 1 phase e = 0 at column v. The two
# functions below copy one image row to (or back from) those two phase rows.
# Loop mapping of both: prange over the (channel, image) pairs, each iteration
# owning image b of channel c. The row copies run on unsigned indices (no
# negative-index tests): 0.35 -> 0.18 ms at 32x16x28x28 against a loop over
# the phase pixels with a bounds test on each.
@njit(parallel=True, cache=True)
def space_to_depth_line(x, Ho, R, q):
    """q[4c + 2a + e, (b*(Ho+1) + u)*R + v] = x[b, c, 2u + a - 1, 2v + e - 1] (0 off the image)."""
    B, C, H, W = x.shape
    size = (Ho + 1) * R                              # one image's stretch of a phase line
    one, two = np.uint64(1), np.uint64(2)
    n_even, n_odd = np.uint64((W + 1) // 2), np.uint64(W // 2 + 1)
    for cb in prange(C * B):
        c, b = cb // B, cb % B
        base = b * size
        for phase in range(4):                       # zeros first: the padding
            line = q[4 * c + phase]
            line[base:base + size] = 0
            if b == B - 1:
                line[B * size:] = 0                  # and the tail after the last image
        for h in range(H):
            u, a = (h + 1) // 2, (h + 1) % 2
            row, even, odd = x[b, c, h], q[4 * c + 2 * a + 1], q[4 * c + 2 * a]
            o = np.uint64(base + u * R)
            for v in range(n_even):
                even[o + v] = row[two * v]                 # w = 2v:     phase e = 1
            for v in range(one, n_odd):
                odd[o + v] = row[two * v - one]            # w = 2v - 1: phase e = 0
    return q


@njit(parallel=True, cache=True)
def depth_to_space_line(dq, Ho, R, dx):
    """dx[b, c, h, w] = dq[4c + 2a + e, (b*(Ho+1) + u)*R + v], h = 2u + a - 1, w = 2v + e - 1."""
    B, C, H, W = dx.shape
    one, two = np.uint64(1), np.uint64(2)
    n_even, n_odd = np.uint64((W + 1) // 2), np.uint64(W // 2 + 1)
    for bc in prange(B * C):
        b, c = bc // C, bc % C
        base = b * (Ho + 1) * R
        for h in range(H):
            u, a = (h + 1) // 2, (h + 1) % 2
            row, even, odd = dx[b, c, h], dq[4 * c + 2 * a + 1], dq[4 * c + 2 * a]
            o = np.uint64(base + u * R)
            for v in range(n_even):
                row[two * v] = even[o + v]
            for v in range(one, n_odd):
                row[two * v - one] = odd[o + v]
    return dx


@njit(inline="always")
def phase_point(c, h, w, g, size, R, V, row_len):
    """Where pixel (h, w) of channel c lies on the phase lanes (4C, row_len), flat: the
    offset of its point in group g (stretches of `size`), whose V lanes follow it.
    Row h is phase row u = (h + 1) // 2 of phase a = (h + 1) % 2, and so for columns."""
    u, a = (h + 1) // 2, (h + 1) % 2
    v, e = (w + 1) // 2, (w + 1) % 2
    return np.uint64((4 * c + 2 * a + e) * row_len + g * size + (u * R + v) * V)


@njit(inline="always")
def zero_phase_stretch(q, c, g, G, size):
    """Zero group g's stretch (`size` values) of the four phase lines of channel c in q
    (4C, L), and for the last group (of G) the tail after it: the padding."""
    for phase in range(4):
        line = q[4 * c + phase]
        line[g * size:(g + 1) * size] = 0
        if g == G - 1:
            line[G * size:] = 0                      # the tail after the last group


# Loop mapping: prange over (channel, group of V images); iteration (c, g)
# zeroes group g's stretch of the four phase lines of channel c (the padding;
# the last group also the tail), then copies each pixel of its V images to
# its phase point, the V lanes `plane` = C*H*W values apart in the flat x
# (as lines.to_lanes). Measured alone against a loop over the phase points
# that tested each for the padding and indexed x[b, c, h, w] (batch 32 and 64):
# 0.63-0.68x the time; depth_to_space_lanes (flat, same order) 0.48-0.60x.
@njit(parallel=True, cache=True)
def space_to_depth_lanes(x, Ho, R, q):
    """q[4c + 2a + e, ((g*(Ho+1) + u)*R + v)*V + lane] = x[g*V + lane, c, 2u + a - 1, 2v + e - 1]
    (0 off the image), V = LANES."""
    B, C, H, W = x.shape
    V = LANES
    G, v_ = B // V, np.uint64(V)
    L = q.shape[1]
    x_f, q_f, plane = x.ravel(), q.ravel(), np.uint64(C * H * W)
    size = (Ho + 1) * R * V                          # one group's stretch of a phase line
    for cg in prange(C * G):
        c, g = cg // G, cg % G
        zero_phase_stretch(q, c, g, G, size)
        src = np.uint64((g * V * C + c) * H * W)     # x[g*V, c, 0, 0]
        for h in range(H):
            for w in range(W):
                o, s = phase_point(c, h, w, g, size, R, V, L), src + np.uint64(h * W + w)
                for lane in range(v_):
                    q_f[o + lane] = x_f[s + lane * plane]
    return q


@njit(parallel=True, cache=True)
def depth_to_space_lanes(dq, Ho, R, dx):
    """dx[g*V + lane, c, h, w] = dq[4c + 2a + e, ((g*(Ho+1) + u)*R + v)*V + lane],
    h = 2u + a - 1, w = 2v + e - 1, V = LANES; dq and dx read / written flat as above."""
    B, C, H, W = dx.shape
    V = LANES
    G, v_ = B // V, np.uint64(V)
    P = dq.shape[1]
    dq_f, dx_f, plane = dq.ravel(), dx.ravel(), np.uint64(C * H * W)
    size = (Ho + 1) * R * V
    for cg in prange(C * G):
        c, g = cg // G, cg % G
        dst = np.uint64((g * V * C + c) * H * W)     # dx[g*V, c, 0, 0]
        for h in range(H):
            for w in range(W):
                s, d = phase_point(c, h, w, g, size, R, V, P), dst + np.uint64(h * W + w)
                for lane in range(v_):
                    dx_f[d + lane * plane] = dq_f[s + lane]
    return dx


# Loop mapping: prange over (chunk, quad of output channels), the chunks of
# conv3x3_line (up to `chunk` values of one of the nseg stretches); iteration
# (k, m) owns chunk k of the rows y[m..m+3]. For each input channel it holds
# the 16 weights in registers: four shifted loads of the line feed sixteen
# multiply-adds (with 2x2 taps a quad fits the registers where the 3x3
# kernel takes a pair). `shift` moves the start of each input line: zeros
# here, the phase offsets in upconv/cpu.py.
@njit(parallel=True, fastmath={"contract"}, cache=True)
def conv2x2_line(q, shift, w, bias, row, col, nseg, seg, stride, chunk, y, y_head):
    """y[m, y_head + p] = bias[m] + sum_{k,i,j} w[m, k, i, j] * q[k, shift[k] + p + i*row + j*col]
    for p in the stretches [s*stride, s*stride + seg), s < nseg (lines.Lines).

    q (K, L) lines, shift (K,) ints, w (M, K, 2, 2), bias (M,), y (grid_rows(M, 4), >= P + y_head)
    the output grid (y_head = 0) or lines (y_head = their head).
    """
    K = q.shape[0]
    M = w.shape[0]
    quads = (M + 3) // 4
    if y.shape[0] < 4 * quads:
        raise ValueError("conv2x2_line: y needs grid_rows(M, 4) rows (spares when M % 4 != 0)")
    per_seg = (seg + chunk - 1) // chunk
    r1, u1 = np.uint64(row), np.uint64(col)
    zeros = np.zeros_like(w[0])                                     # (K, 2, 2)
    for it in prange(nseg * per_seg * quads):
        k, m0 = it // quads, 4 * (it % quads)
        # past the last channel a quad adds zeros into y's spare rows (grid_rows)
        m1, m2, m3 = min(m0 + 1, M - 1), min(m0 + 2, M - 1), min(m0 + 3, M - 1)
        w0 = w[m0]
        w1 = w[m1] if m0 + 1 < M else zeros
        w2 = w[m2] if m0 + 2 < M else zeros
        w3 = w[m3] if m0 + 3 < M else zeros
        sg, c = k // per_seg, k % per_seg   # chunk c of stretch sg
        p0 = sg * stride + c * chunk
        p1 = sg * stride + min((c + 1) * chunk, seg)
        y0, y1, y2, y3 = y[m0], y[m0 + 1], y[m0 + 2], y[m0 + 3]
        y0[y_head + p0:y_head + p1] = bias[m0]
        y1[y_head + p0:y_head + p1] = bias[m1] if m0 + 1 < M else 0
        y2[y_head + p0:y_head + p1] = bias[m2] if m0 + 2 < M else 0
        y3[y_head + p0:y_head + p1] = bias[m3] if m0 + 3 < M else 0
        for kk in range(K):
            x = q[kk, shift[kk]:]
            a00, a01, a10, a11 = w0[kk, 0, 0], w0[kk, 0, 1], w0[kk, 1, 0], w0[kk, 1, 1]
            b00, b01, b10, b11 = w1[kk, 0, 0], w1[kk, 0, 1], w1[kk, 1, 0], w1[kk, 1, 1]
            c00, c01, c10, c11 = w2[kk, 0, 0], w2[kk, 0, 1], w2[kk, 1, 0], w2[kk, 1, 1]
            d00, d01, d10, d11 = w3[kk, 0, 0], w3[kk, 0, 1], w3[kk, 1, 0], w3[kk, 1, 1]
            for p in range(np.uint64(p0), np.uint64(p1)):
                x00, x01, x10, x11 = x[p], x[p + u1], x[p + r1], x[p + r1 + u1]
                o = p + np.uint64(y_head)
                y0[o] += (a00 * x00 + a01 * x01) + (a10 * x10 + a11 * x11)
                y1[o] += (b00 * x00 + b01 * x01) + (b10 * x10 + b11 * x11)
                y2[o] += (c00 * x00 + c01 * x01) + (c10 * x10 + c11 * x11)
                y3[o] += (d00 * x00 + d01 * x01) + (d10 * x10 + d11 * x11)
    return y


# Loop mapping: prange over (chunk, quad of output channels); iteration (k, m)
# writes its own partial sums dw_k[k, m..m+3] (summed over the chunks
# afterwards). For each phase channel: sixteen dot products over the chunk
# in one pass, the four shifted loads shared by the quad.
@njit(parallel=True, fastmath=True, cache=True)
def conv2x2_line_weight_grad(q, shift, dyl, row, col, nseg, seg, stride, chunk, dw_k):
    """dw_k[k, m, kk, 2i + j] = sum_{p in chunk k} dyl[m, p + row + col] * q[kk, shift[kk] + p + i*row + j*col],
    the chunks of conv2x2_line."""
    K = q.shape[0]
    M = dyl.shape[0]
    quads = (M + 3) // 4
    per_seg = (seg + chunk - 1) // chunk
    r1, u1, g0 = np.uint64(row), np.uint64(col), np.uint64(row + col)  # dy[b, h, w] at its grid point + row + col
    zero = dw_k.dtype.type(0)
    for it in prange(nseg * per_seg * quads):
        k, m0 = it // quads, 4 * (it % quads)
        # past the last channel a quad computes channel M - 1 again (the same values)
        m1, m2, m3 = min(m0 + 1, M - 1), min(m0 + 2, M - 1), min(m0 + 3, M - 1)
        sg, c = k // per_seg, k % per_seg
        p0 = sg * stride + c * chunk
        p1 = sg * stride + min((c + 1) * chunk, seg)
        g_0, g_1, g_2, g_3 = dyl[m0], dyl[m1], dyl[m2], dyl[m3]
        for kk in range(K):
            x = q[kk, shift[kk]:]
            a00 = a01 = a10 = a11 = b00 = b01 = b10 = b11 = zero
            c00 = c01 = c10 = c11 = d00 = d01 = d10 = d11 = zero
            for p in range(np.uint64(p0), np.uint64(p1)):
                x00, x01, x10, x11 = x[p], x[p + u1], x[p + r1], x[p + r1 + u1]
                da, db, dc, dd = g_0[p + g0], g_1[p + g0], g_2[p + g0], g_3[p + g0]
                a00 += da * x00; a01 += da * x01; a10 += da * x10; a11 += da * x11  # noqa: E702
                b00 += db * x00; b01 += db * x01; b10 += db * x10; b11 += db * x11  # noqa: E702
                c00 += dc * x00; c01 += dc * x01; c10 += dc * x10; c11 += dc * x11  # noqa: E702
                d00 += dd * x00; d01 += dd * x01; d10 += dd * x10; d11 += dd * x11  # noqa: E702
            s = dw_k[k]
            s[m0, kk, 0], s[m0, kk, 1], s[m0, kk, 2], s[m0, kk, 3] = a00, a01, a10, a11
            s[m1, kk, 0], s[m1, kk, 1], s[m1, kk, 2], s[m1, kk, 3] = b00, b01, b10, b11
            s[m2, kk, 0], s[m2, kk, 1], s[m2, kk, 2], s[m2, kk, 3] = c00, c01, c10, c11
            s[m3, kk, 0], s[m3, kk, 1], s[m3, kk, 2], s[m3, kk, 3] = d00, d01, d10, d11
    return dw_k


def line_shifts(n, offset=0):
    """conv2x2_line's `shift` for n lines all read from `offset` on (0: from their start)."""
    return np.full(n, offset, np.int64)


def is_4x4_stride2(kh, kw, sh, sw, ph, pw):
    """True for the convolution these kernels cover: 4x4, stride 2, padding 1."""
    return kh == kw == 4 and sh == sw == 2 and ph == pw == 1


def phase_weights(w):
    """w (Cout, Cin, 4, 4) -> (Cout, 4*Cin, 2, 2): [o, 4c + 2a + e, i, j] = w[o, c, 2i + a, 2j + e]."""
    Cout, Cin = w.shape[:2]
    w6 = w.reshape(Cout, Cin, 2, 2, 2, 2)                    # (o, c, i, a, j, e)
    return np.ascontiguousarray(w6.transpose(0, 1, 3, 5, 2, 4).reshape(Cout, 4 * Cin, 2, 2))


def _phases(x, Cout):
    """(q, g, Ho, Wo): the phase lines q (4Cin, g.L) of x and the Lines g of the output grid."""
    B, Cin, H, W = x.shape
    Ho, Wo = output_size(H, W)
    g = lines(B, Ho, Wo, min(Cin, Cout))
    q = scratch("q", (4 * Cin, g.L), x.dtype)                                 # (4Cin, L)
    if g.V == 1:
        return space_to_depth_line(x, Ho, g.R, q), g, Ho, Wo
    return space_to_depth_lanes(x, Ho, g.R, q), g, Ho, Wo


def conv4x4s2_forward_cpu(x, w, bias):
    """y = conv4x4 stride 2 padding 1 (x, w) + bias:  x (B, Cin, H, W) -> y (B, Cout, Ho, Wo)."""
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)
    B, Cout = x.shape[0], w.shape[0]
    bias = np.zeros(Cout, x.dtype) if bias is None else np.ascontiguousarray(bias)
    q, g, Ho, Wo = _phases(x, Cout)
    grid = conv2x2_line(q, line_shifts(len(q)), phase_weights(w), np.zeros(Cout, x.dtype), *steps(g),
                        scratch("grid", (grid_rows(Cout, 4), g.P), x.dtype), 0)
    return from_lines(grid, g, bias, np.empty((B, Cout, Ho, Wo), x.dtype))


def conv4x4s2_backward_cpu(dy, x, w, need_bias=True):
    """(dx, dw, db) of conv4x4s2_forward_cpu; db is None unless need_bias."""
    dy, x, w = np.ascontiguousarray(dy), np.ascontiguousarray(x), np.ascontiguousarray(w)
    Cin = x.shape[1]
    Cout = w.shape[0]
    q, g, Ho, Wo = _phases(x, Cout)
    dyl = to_lines(dy, g, scratch("dyl", (Cout, g.L), x.dtype))                # (Cout, L)
    dw_k = conv2x2_line_weight_grad(q, line_shifts(len(q)), dyl, *steps(g),
                                    scratch("dw_k", (chunks(g), Cout, 4 * Cin, 4), x.dtype))
    dw6 = dw_k.sum(axis=0).reshape(Cout, Cin, 2, 2, 2, 2)                    # (o, c, a, e, i, j)
    dw = dw6.transpose(0, 1, 4, 2, 5, 3).reshape(w.shape)                    # (o, c, 2i+a, 2j+e)
    w_dx = flip_taps(phase_weights(w))                                        # (4Cin, Cout, 2, 2)
    # dq on the whole grid: row Ho and column Wo of each phase plane hold real pixels too
    dq = conv2x2_line(dyl, line_shifts(len(dyl)), w_dx, np.zeros(4 * Cin, x.dtype), g.row, g.col, 1, g.P, g.P,
                      CHUNK, scratch("q", (4 * Cin, g.P), x.dtype), 0)  # q is done with; 4Cin needs no spare rows
    to_space = depth_to_space_line if g.V == 1 else depth_to_space_lanes
    dx = to_space(dq, Ho, g.R, np.empty(x.shape, x.dtype))                    # (B, Cin, H, W)
    db = dy.sum(axis=(0, 2, 3)) if need_bias else None                        # (Cout,)
    return dx, dw, db
