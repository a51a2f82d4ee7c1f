"""Twins of the INT formats and kernels, bit-exact (csrc/kernels/quant.*, qkernels.inc, qtile_*.inc): the
block layout, activation quantisation, the integer dots and their float epilogue, the activations' exp/erf.
"""
from __future__ import annotations

import numpy as np

Q_ZERO = {"int8": 128, "int4": 8, "int4_asym": 0, "int4_nl": 128}
Q_PAD = {"int8": 128, "int4": 8, "int4_asym": 0, "int4_nl": 8}  # the code of a padding column (scale 0)
NL_LEVELS = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], np.int8)
NL_MIDPOINTS = ((NL_LEVELS[:-1].astype(np.float32) + NL_LEVELS[1:]) / 2).astype(np.float32)


F32 = np.float32


def quantize_weights(w: np.ndarray, fmt: str, G: int):
    """Twin of moe_quantize's arithmetic: w (E, N, K) f32 -> codes u (E, N, K) uint8, scale and
    offset (E, N, K/G) as fp16 (offset None unless int4_asym)."""
    E, N, K = w.shape
    g = np.asarray(w, F32).reshape(E, N, K // G, G)
    if not np.isfinite(g).all():
        raise ValueError("weights hold NaN or inf")
    m16 = None
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if fmt == "int8":
            s16 = (np.abs(g).max(-1) / F32(127)).astype(np.float16)
            s = s16.astype(F32)[..., None]
            q = np.where(s > 0, np.rint(g / s), F32(0))
            u = np.clip(q, -127, 127) + 128
        elif fmt == "int4":
            idx = np.abs(g).argmax(-1)[..., None]
            mx = np.take_along_axis(g, idx, -1)[..., 0]
            best = np.full(mx.shape, np.inf)
            s16 = np.full(mx.shape, np.inf, np.float16)  # stays inf when no candidate fits fp16
            for i in range(9):  # divisors 8, 8.25, ..., 10: least squared error wins (first on ties)
                h = (mx / F32(-(8.0 + 0.25 * i))).astype(np.float16)
                s = h.astype(F32)[..., None]
                v = np.clip(np.where(s != 0, np.rint(g / s), F32(0)), -8, 7)
                d = g.astype(np.float64) - (s * v).astype(F32).astype(np.float64)
                err = np.cumsum(d * d, axis=-1)[..., -1]  # sequential, as the C loop
                take = err < best
                best = np.where(take, err, best)
                s16 = np.where(take, h, s16)
            s = s16.astype(F32)[..., None]
            u = np.clip(np.where(s != 0, np.rint(g / s) + F32(8), F32(8)), 0, 15)
        elif fmt == "int4_nl":
            s16, u = _nl_scales(g)
        else:
            lo, hi = g.min(-1), g.max(-1)
            s16 = ((hi - lo) / F32(15)).astype(np.float16)
            m16 = lo.astype(np.float16)
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isinf(s16).any() or (m16 is not None and np.isinf(m16).any()):  # as moe_quantize: MOE_ERANGE
            raise ValueError("weights are too large for fp16 block scales")
    with np.errstate(divide="ignore", invalid="ignore"):
        if fmt == "int4_asym":
            s, m = s16.astype(F32)[..., None], m16.astype(F32)[..., None]
            u = np.clip(np.where(s > 0, np.rint((g - m) / s), F32(0)), 0, 15)
    return u.reshape(E, N, K).astype(np.uint8), s16, m16


def nl_nearest(v: np.ndarray) -> np.ndarray:
    """Index of the int4_nl level nearest to each float32 v: the number of midpoints below it (ties go low)."""
    return np.searchsorted(NL_MIDPOINTS, np.asarray(v, F32), side="left").astype(np.uint8)


def _nl_assign(g, h):
    """Codes (nearest levels of g / s) under fp16 scales h, their squared error (float64, summed in order) and the
    fp16 least-squares scale of those codes, sum g L / sum L^2: quant.c's nl_assign."""
    s = h.astype(F32)[..., None]
    u = nl_nearest(np.where(s != 0, g / s, F32(0)))
    L = NL_LEVELS[u].astype(np.float64)
    d = g.astype(np.float64) - (s * L.astype(F32)).astype(F32).astype(np.float64)
    wl = np.cumsum(g.astype(np.float64) * L, axis=-1)[..., -1]
    refit = (wl / (L ** 2).sum(-1)).astype(F32).astype(np.float16)
    return u, np.cumsum(d * d, axis=-1)[..., -1], refit


def _nl_scales(g):
    """Twin of quantize_block's int4_nl search over (..., G) groups g: candidates s = (signed max) / -d for
    d = 119, 121, ..., 135 and each one's least-squares refit; the least squared error wins (first on ties)."""
    idx = np.abs(g).argmax(-1)[..., None]
    mx = np.take_along_axis(g, idx, -1)[..., 0]
    best = np.full(mx.shape, np.inf)
    s16 = np.full(mx.shape, np.inf, np.float16)
    for i in range(9):
        h = (mx / F32(-(119.0 + 2.0 * i))).astype(np.float16)
        ok = ~np.isinf(h)
        for _ in range(2):  # the candidate, then its refit
            _, err, refit = _nl_assign(g, np.where(ok, h, np.float16(0)))
            take = ok & (err < best)
            best, s16 = np.where(take, err, best), np.where(take, h, s16)
            h = refit
            ok &= ~np.isinf(h)
    u, _, _ = _nl_assign(g, np.where(np.isinf(s16), np.float16(0), s16))
    return s16, u


def code_values(u, fmt: str) -> np.ndarray:
    """float32 values of codes u before the scale: u - z, or the int4_nl level L[u] (int4_asym: u itself)."""
    if fmt == "int4_nl":
        return NL_LEVELS[u].astype(F32)
    return np.asarray(u).astype(F32) - F32(Q_ZERO[fmt])


def dequantize_weights(u, s16, m16, fmt: str, G: int) -> np.ndarray:
    E, N, K = u.shape
    s = s16.astype(F32)[..., None]
    if fmt == "int4_asym":
        w = s * u.reshape(E, N, K // G, G).astype(F32) + m16.astype(F32)[..., None]
    else:
        w = s * code_values(u.reshape(E, N, K // G, G), fmt)
    return w.reshape(E, N, K).astype(F32)


def pack_blocks(u, s16, m16, fmt: str, G: int, P: int = 1, p: int = 0, out=None) -> np.ndarray:
    """The byte layout of csrc/quant.h for codes u (E, N, K): blocks [e][N/16][K/G] (slot p of P)."""
    E, N, K = u.shape
    Np = -(-N // 16) * 16
    pad_u = np.full((E, Np, K), Q_PAD[fmt], np.uint8)
    pad_u[:, :N] = u
    pad_s = np.zeros((E, Np, K // G), np.float16)
    pad_s[:, :N] = s16
    hdr = 64 if fmt == "int4_asym" else 32
    bb = hdr + (16 if fmt == "int8" else 8) * G
    nblocks = E * (Np // 16) * (K // G)
    blocks = np.zeros((nblocks, P, bb), np.uint8) if out is None else out.reshape(nblocks, P, bb)
    # (e, panel, group, column, k) -> codes of each block, columns inner
    cu = pad_u.reshape(E, Np // 16, 16, K // G, G).transpose(0, 1, 3, 2, 4).reshape(nblocks, 16, G)
    cs = pad_s.reshape(E, Np // 16, 16, K // G).transpose(0, 1, 3, 2).reshape(nblocks, 16)
    blocks[:, p, :32] = np.ascontiguousarray(cs).view(np.uint8).reshape(nblocks, 32)
    if fmt == "int4_asym":
        pad_m = np.zeros((E, Np, K // G), np.float16)
        pad_m[:, :N] = m16
        cm = pad_m.reshape(E, Np // 16, 16, K // G).transpose(0, 1, 3, 2).reshape(nblocks, 16)
        blocks[:, p, 32:64] = np.ascontiguousarray(cm).view(np.uint8).reshape(nblocks, 32)
    if fmt == "int8":  # quads: [quad j][column c][4 inputs]
        q = cu.reshape(nblocks, 16, G // 4, 4).transpose(0, 2, 1, 3).reshape(nblocks, 16 * G)
    else:  # pairs of quads: low nibble quad 2j, high nibble quad 2j+1
        c8 = cu.reshape(nblocks, 16, G // 8, 2, 4)
        q = (c8[:, :, :, 0, :] | (c8[:, :, :, 1, :] << 4)).transpose(0, 2, 1, 3).reshape(nblocks, 8 * G)
    blocks[:, p, hdr:] = q
    return blocks.reshape(-1)


def quantize_activations(x: np.ndarray, G: int):
    """Twin of the kernels' quantize_rows: x (R, K) -> xq (R, K) int8, sx (R, K/G) f32, sums (R, K/G) i32."""
    R, K = x.shape
    g = np.asarray(x, F32).reshape(R, K // G, G)
    bad = ~np.isfinite(g).all(-1)  # a group holding NaN or inf: scale NaN, codes and sums 0
    g = np.where(bad[..., None], F32(0), g)
    amax = np.abs(g).max(-1)
    s = (amax / F32(127)).astype(F32)
    with np.errstate(divide="ignore"):
        inv = np.where(amax > 0, F32(1) / s, F32(0)).astype(F32)
    q = np.clip(np.rint(g * inv[..., None]), -127, 127)
    return q.reshape(R, K).astype(np.int8), np.where(bad, F32(np.nan), s).astype(F32), q.sum(-1).astype(np.int32)


def qmatmul(x: np.ndarray, u, s16, m16, fmt: str, G: int) -> np.ndarray:
    """Twin of the INT kernels for one matrix: x (R, K) f32 @ dequant(u)^T (N, K) -> (R, N) f32 with
    the kernels' arithmetic: int dots per group, then acc = acc + sx * (s * (D - z S)) in float32."""
    xq, sx, S = quantize_activations(x, G)
    R, K = x.shape
    N = u.shape[0]
    ng = K // G
    acc = np.zeros((R, N), F32)
    s = s16.astype(F32)  # (N, ng)
    ud = NL_LEVELS[u].astype(np.int64) + 128 if fmt == "int4_nl" else u.astype(np.int64)  # what the dots read
    for g in range(ng):
        D = xq[:, g * G:(g + 1) * G].astype(np.int64) @ ud[:, g * G:(g + 1) * G].T  # (R, N)
        if fmt == "int4_asym":
            t = s[None, :, g] * D.astype(F32) + m16.astype(F32)[None, :, g] * S[:, g, None].astype(F32)
        else:
            t = s[None, :, g] * (D - Q_ZERO[fmt] * S[:, g, None].astype(np.int64)).astype(F32)
        acc = acc + sx[:, g, None] * t
    return acc


def expf_poly(x):
    """Bit-exact twin of the kernels' expf_poly (csrc/kernels/simd_kernels.inc) in float32."""
    x = np.asarray(x, F32)
    xc = np.maximum(np.minimum(x, F32(88.7228393)), F32(-104.0))
    n = (xc * F32(1.44269504088896341) + F32(12582912.0)) - F32(12582912.0)
    r = xc - n * F32(0.693359375)
    r = r - n * F32(-2.12194440e-4)
    p = F32(1.9875691500e-4)
    for c in (1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1):
        p = p * r + F32(c)
    p = p * r * r + r + F32(1.0)
    ni = n.astype(np.int32)
    n1 = ni >> 1
    n2 = ni - n1
    s1 = ((n1 + 127) << 23).astype(np.int32).view(F32)
    s2 = ((n2 + 127) << 23).astype(np.int32).view(F32)
    with np.errstate(over="ignore"):
        y = (p * s1) * s2
    y = np.where(x > F32(88.7228393), F32(np.inf), y)
    return np.where(x < F32(-104.0), F32(0), y).astype(F32)


def erf_approx(x):
    """Bit-exact twin of the kernels' erf_approx (Abramowitz & Stegun 7.1.26) in float32."""
    x = np.asarray(x, F32)
    ax = np.abs(x)
    t = F32(1) / (F32(1) + F32(0.3275911) * ax)
    poly = t * (F32(0.254829592) + t * (F32(-0.284496736) + t * (F32(1.421413741) + t * (F32(-1.453152027)
                                                                                       + t * F32(1.061405429)))))
    return np.copysign(F32(1) - poly * expf_poly(-ax * ax), x).astype(F32)


def activate_exact(g, u, ex):
    """Twin of the kernels' fused activation (csrc/kernels/ffn_kernels.inc activate) in float32."""
    g = np.asarray(g, F32)
    gb = g + (F32(0) if ex.gate_bias is None else 0)
    if ex.activation in ("silu", "swiglu"):
        v = gb / (F32(1) + expf_poly(-gb))
    elif ex.activation == "gelu":
        v = F32(0.5) * gb * (F32(1) + erf_approx(gb * F32(0.70710678118654752)))
    elif ex.activation in ("gelu_tanh", "gelu_new", "gelu_pytorch_tanh"):
        z = F32(0.7978845608028654) * (gb + F32(0.044715) * gb * gb * gb)
        with np.errstate(over="ignore"):
            th = F32(1) - F32(2) / (expf_poly(F32(2) * z) + F32(1))
        v = F32(0.5) * gb * (F32(1) + th)
    elif ex.activation == "relu":
        v = np.where(gb < 0, F32(0), gb)
    elif ex.activation == "relu2":
        v = np.where(gb < 0, F32(0), gb * gb)
    elif ex.activation == "gpt_oss":
        a = np.minimum(gb, F32(ex.limit))
        v = a / (F32(1) + expf_poly(F32(-ex.alpha) * a))
        if u is not None:
            v = v * (np.clip(u, F32(-ex.limit), F32(ex.limit)) + F32(1))
        return v.astype(F32)
    else:
        raise NotImplementedError(f"exact twin for {ex.activation}")
    return (v * u if u is not None else v).astype(F32)


def moe_layer_forward_quant(x, weights, experts, dropped, qex, ex, fmt: str, G: int):
    """NumPy model of the INT path of moe_forward (routed experts only, no biases): qex = dict of
    (u, s16, m16) for 'gate', 'up', 'down' from quantize_weights; ex the ExpertWeights (activation)."""
    T, K = experts.shape
    H = x.shape[1]
    out = np.zeros((T, H), F32)
    contrib = {}
    for e in np.unique(experts):
        tok, slot = np.nonzero((experts == e) & (True if dropped is None else ~np.asarray(dropped)))
        if len(tok) == 0:
            continue
        sel = lambda name: tuple(None if a is None else a[e] for a in qex[name])  # noqa: E731
        xe = x[tok]
        up = qmatmul(xe, *sel("up"), fmt, G)
        if qex.get("gate") is not None:
            h = activate_exact(qmatmul(xe, *sel("gate"), fmt, G), up, ex)
        else:
            h = activate_exact(up, None, ex)
        y = qmatmul(h, *sel("down"), fmt, G)
        for i, (t, k) in enumerate(zip(tok, slot)):
            contrib[(t, e)] = weights[t, k] * y[i]
    for t in range(T):  # ascending expert order, as the kernel combines
        for e in sorted(int(v) for v in experts[t]):
            if (t, e) in contrib:
                out[t] = out[t] + contrib[(t, e)]
    return out
