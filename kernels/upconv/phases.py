"""The phase weights of nearest x2 upsampling followed by a 3x3 conv (see upconv/cpu.py).

Output row 2u + a of conv3x3(up2(x)) reads rows of x only: u - 1, u, u for
a = 0 and u, u, u + 1 for a = 1, so it is a 2-tap filter on x whose taps are
sums of the 3x3 taps, W_a[t] = sum_i PHASE_TAPS[a, t, i] w[i], per axis.
Plain array code (NumPy or CuPy), shared by the CPU and CUDA kernels.
"""
import numpy as np

from ..xp import get_xp

# PHASE_TAPS[a, t, i] = 1 when tap i of the 3x3 kernel lands on tap t of phase a's 2-tap filter
PHASE_TAPS = np.array([[[1, 0, 0],     # a = 0: t = 0 <- w0, t = 1 <- w1 + w2
                        [0, 1, 1]],
                       [[1, 1, 0],     # a = 1: t = 0 <- w0 + w1, t = 1 <- w2
                        [0, 0, 1]]])
PHASES = ((0, 0), (0, 1), (1, 0), (1, 1))   # (a, e), in the order of the phase grids


# The same as one matrix: PHASE_MATRIX[(a, e, t, s), (i, j)] = PHASE_TAPS[a, t, i] PHASE_TAPS[e, s, j]
PHASE_MATRIX = np.einsum("ati,esj->aetsij", PHASE_TAPS, PHASE_TAPS).reshape(16, 9)


def phase_weights(w):
    """w (Cout, Cin, 3, 3) -> W (4, Cout, Cin, 2, 2): W[2a + e] = W_ae."""
    xp = get_xp(w)
    Cout, Cin = w.shape[:2]
    W = w.reshape(Cout * Cin, 9) @ xp.asarray(PHASE_MATRIX.T, dtype=w.dtype)   # (Cout*Cin, 16)
    return xp.ascontiguousarray(W.reshape(Cout, Cin, 4, 2, 2).transpose(2, 0, 1, 3, 4))


def phase_weights_grad(dW):
    """The adjoint of phase_weights: dW (4, Cout, Cin, 2, 2) -> dw (Cout, Cin, 3, 3)."""
    Cout, Cin = dW.shape[1:3]
    dW2 = dW.transpose(1, 2, 0, 3, 4).reshape(Cout * Cin, 16)            # (Cout*Cin, 16)
    return (dW2 @ get_xp(dW).asarray(PHASE_MATRIX, dtype=dW.dtype)).reshape(Cout, Cin, 3, 3)
