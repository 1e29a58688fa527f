"""Scaled dot-product attention of several heads: the plain array-module reference.

Input is the per-token output of the q/k/v projection, qkv (B, N, 3C) =
[q | k | v]; head h uses channels h*d ... (h+1)*d - 1 of each (d = C / heads):

    S = q_h k_h^T * scale              (B, heads, N, N), scale = 1 / sqrt(d)
    P = softmax(S) over the keys       row i: query i's weights over the keys j
    O = P v_h                          (B, heads, N, d), merged back to out (B, N, C)

Backward, with d_out (B, N, C) given (dO its heads):
    dv = P^T dO,   dP = dO v^T,   dS = P * (dP - sum_j dP * P) * scale,
    dq = dS k,     dk = dS^T q      -> d_qkv (B, N, 3C) = [dq | dk | dv].

attention/cpu.py and attention/cuda.py compute the same per (sample, head)
in one pass, without the split/merge copies and the (B, heads, N, N)
temporaries of the steps below.
"""
from ..xp import get_xp


def check_attention_args(qkv, heads):
    """(B, N, C, d) of qkv (B, N, 3C), or ValueError."""
    if qkv.ndim != 3 or qkv.shape[2] % 3:
        raise ValueError(f"qkv: expected (B, N, 3C), got shape {tuple(qkv.shape)}")
    B, N, C3 = qkv.shape
    C = C3 // 3
    if heads < 1 or C % heads:
        raise ValueError(f"heads: expected a divisor of C = {C}, got {heads}")
    return B, N, C, C // heads


def check_backward_args(d_out, qkv, P, heads):
    """(B, N, C, d), or ValueError unless d_out (B, N, C) and P (B, heads, N, N) fit qkv."""
    B, N, C, d = check_attention_args(qkv, heads)
    if tuple(d_out.shape) != (B, N, C):
        raise ValueError(f"d_out: expected shape {(B, N, C)}, got {tuple(d_out.shape)}")
    if tuple(P.shape) != (B, heads, N, N):
        raise ValueError(f"P: expected shape {(B, heads, N, N)}, got {tuple(P.shape)}")
    return B, N, C, d


def _split_heads(a, heads):
    """(B, N, C) -> (B, heads, N, d), a view."""
    B, N, C = a.shape
    return a.reshape(B, N, heads, C // heads).transpose(0, 2, 1, 3)


def _merge_heads(a):
    """(B, heads, N, d) -> (B, N, heads * d)."""
    B, h, N, d = a.shape
    return a.transpose(0, 2, 1, 3).reshape(B, N, h * d)


def softmax(s, axis=-1):
    """exp(s - max) / sum exp(s - max): the max is subtracted for stability."""
    xp = get_xp(s)
    e = xp.exp(s - s.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def softmax_backward(p, dp, axis=-1):
    """dS for P = softmax(S): dS_i = P_i (dP_i - sum_j dP_j P_j)."""
    return p * (dp - (dp * p).sum(axis=axis, keepdims=True))


def attention_forward_reference(qkv, heads, scale):
    """(out (B, N, C), P (B, heads, N, N)) of softmax(q k^T * scale) v per head."""
    xp = get_xp(qkv)
    check_attention_args(qkv, heads)
    q, k, v = (_split_heads(a, heads) for a in xp.split(qkv, 3, axis=-1))  # 3 x (B, h, N, d)
    P = softmax(xp.matmul(q, k.transpose(0, 1, 3, 2)) * scale, axis=-1)   # (B, h, N, N)
    return _merge_heads(xp.matmul(P, v)), P                                # (B, N, C), P


def attention_backward_reference(d_out, qkv, P, heads, scale):
    """d_qkv (B, N, 3C) of attention_forward_reference, given d_out (B, N, C) and its P."""
    xp = get_xp(qkv)
    check_backward_args(d_out, qkv, P, heads)
    q, k, v = (_split_heads(a, heads) for a in xp.split(qkv, 3, axis=-1))  # 3 x (B, h, N, d)
    dO = _split_heads(d_out, heads)                                        # (B, h, N, d)
    dv = xp.matmul(P.transpose(0, 1, 3, 2), dO)                            # (B, h, N, d)
    dS = softmax_backward(P, xp.matmul(dO, v.transpose(0, 1, 3, 2))) * scale  # (B, h, N, N)
    dq = xp.matmul(dS, k)                                                  # (B, h, N, d)
    dk = xp.matmul(dS.transpose(0, 1, 3, 2), q)                            # (B, h, N, d)
    return xp.concatenate([_merge_heads(a) for a in (dq, dk, dv)], axis=-1)  # (B, N, 3C)
