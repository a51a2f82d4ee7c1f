"""Calibrated INT4 experts: GPTQ-style rounding from each expert's own activation statistics.

Plain INT4 (moepy.moe.quant) picks each group's scale and rounds every weight to its nearest level, minimising the
weight error. The output error of an expert matrix W (N, K) on its inputs X is ||(W - Q) X^T||, which weighs input
directions by the Hessian X^T X: GPTQ (Frantar et al. 2022) quantizes the columns one at a time and spreads each
column's rounding error over the columns not yet quantized, through the inverse Hessian; `refine` then lowers the
same objective further (single codes moved by a level where that helps, each group's fp16 scale refitted given the
codes; a change kept only if it lowers the error under fp16 scales). Here the statistics are
per expert: the router traces of a calibration text give each expert its own tokens (gate / up see the tokens' hidden
states, down sees the expert's own hidden activations), each token weighted by its routing weight squared (the
layer's output error is the weighted sum). An expert with fewer than `min_tokens` calibration tokens is not skipped
and not fitted to noise: it keeps the plain weight-error quantizer (its weights' own statistics), which is what
llama.cpp's importance matrices lack for rarely routed experts. Scales follow moepy's rule of the format (int4: the
best of nine divisors of the group's signed maximum; int4_asym: the group's minimum and range / 15; int4_nl: the
best of nine candidates and their least-squares refits), so the result is moepy's ordinary "int4" / "int4_asym" /
"int4_nl" format: the same kernels and bits per weight (4.5 for int4 and int4_nl at groups of 32 and for int4_asym
at groups of 64, as llama.cpp's Q4_0 and IQ4_NL; the built-ins' expert widths of 32 allow only groups of 32 there).
int4_nl's levels are not evenly spaced (IQ4_NL's 16 values, denser near zero); GPTQ rounds each column to its
nearest level and refine moves a code to a neighbouring level, as for the uniform formats.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional

import numpy as np

from ..reference.ffn import expert_hidden
from ..reference.quant import code_values, nl_nearest, pack_blocks, quantize_weights

F32 = np.float32
FORMATS = ("int4", "int4_asym", "int4_nl")


def levels(fmt: str) -> np.ndarray:
    """float64 (16,) value of each code before the scale (and offset): u - 8, u, or int4_nl's level L[u]."""
    return code_values(np.arange(16, dtype=np.uint8), fmt).astype(np.float64)


def _nearest_codes(col: np.ndarray, s: np.ndarray, m, fmt: str) -> np.ndarray:
    """Codes (N,) of the values col (N,) under float32 scales s (and offsets m), each its nearest level."""
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(s != 0, (col.astype(F32) - m) / s, F32(0))
    if fmt == "int4_nl":
        return nl_nearest(v.astype(F32))
    lo = 0 if fmt == "int4_asym" else -8
    return (np.clip(np.rint(v), lo, lo + 15) - lo).astype(np.uint8)


@dataclass
class CalibrationReport:
    """Per MoE layer: experts calibrated with GPTQ, experts that kept the plain quantizer (too few tokens), and the
    calibration tokens each expert saw."""

    calibrated: Dict[int, int] = field(default_factory=dict)
    fallback: Dict[int, int] = field(default_factory=dict)
    tokens: Dict[int, np.ndarray] = field(default_factory=dict)

    def __repr__(self):
        c, f = sum(self.calibrated.values()), sum(self.fallback.values())
        return f"CalibrationReport({len(self.calibrated)} MoE layers: {c} experts calibrated, {f} plain (few tokens))"


def _group_params(g: np.ndarray, fmt: str):
    """fp16 scales (N,) and offsets (N,) or None of moepy's rule for one group g (N, G) (int4: quantize_weights'
    search over nine divisors of the signed maximum, least weight error; a Hessian-weighted choice of the divisor
    measured no better; int4_asym: minimum and range / 15)."""
    _, s16, m16 = quantize_weights(g[None].astype(F32), fmt, g.shape[1])
    return s16[0, :, 0], None if m16 is None else m16[0, :, 0]


def gptq_int4(w: np.ndarray, hessian: np.ndarray, group_size: int, damp: float = 0.01, act_order: bool = True):
    """Codes u (N, K) uint8 and fp16 scales (N, K / G) of moepy's INT4 format for w (N, K): gptq(fmt="int4")."""
    u, s16, _ = gptq(w, hessian, group_size, damp, act_order, "int4")
    return u, s16


def gptq(w: np.ndarray, hessian: np.ndarray, group_size: int, damp: float = 0.01, act_order: bool = True,
         fmt: str = "int4"):
    """Codes u (N, K) uint8, fp16 scales (N, K / G) and (int4_asym) fp16 offsets (N, K / G) or None of moepy's
    `fmt` for w (N, K), quantized column by column with GPTQ's error feedback under `hessian` (K, K) = sum of x x^T
    over the inputs (damped by `damp` x its mean diagonal). act_order=False: columns in order, each group's scales
    chosen when the group is reached, from the updated weights; act_order=True: the columns with the largest Hessian
    diagonal first, under the scales the original weights give each group (GPTQ's "static groups")."""
    asym = fmt == "int4_asym"
    lv = levels(fmt)
    W, Hm = _damped(w, hessian, damp)
    N, K = W.shape
    G = group_size
    s16 = np.empty((N, K // G), np.float16)
    m16 = np.zeros((N, K // G), np.float16) if asym else None

    def set_group(gi, g):
        s16[:, gi], m = _group_params(g, fmt)
        if asym:
            m16[:, gi] = m
    if act_order:
        for g0 in range(0, K, G):
            set_group(g0 // G, W[:, g0:g0 + G])
        perm = np.argsort(-np.diag(Hm), kind="stable")
    else:
        perm = np.arange(K)
    W, Hm = W[:, perm], Hm[np.ix_(perm, perm)]
    # upper Cholesky factor of H^-1: the row j of U holds the coefficients that spread column j's error
    U = np.linalg.cholesky(np.linalg.inv(Hm)).T
    q = np.empty((N, K), np.uint8)
    for b0 in range(0, K, G):  # blocks of G columns (the groups themselves unless act_order)
        b1 = b0 + G
        if not act_order:
            set_group(b0 // G, W[:, b0:b1])
        err = np.zeros((N, G))
        for j in range(b0, b1):
            s = s16[:, perm[j] // G].astype(F32)
            m = m16[:, perm[j] // G].astype(F32) if asym else F32(0)
            col = W[:, j]
            q[:, j] = _nearest_codes(col, s, m, fmt)
            e = (col - (s.astype(np.float64) * lv[q[:, j]] + m)) / U[j, j]
            W[:, j + 1:b1] -= np.outer(e, U[j, j + 1:b1])
            err[:, j - b0] = e
        W[:, b1:] -= err @ U[b0:b1, b1:]
    u = np.empty((N, K), np.uint8)
    u[:, perm] = q
    return u, s16, m16


def _damped(w: np.ndarray, hessian: np.ndarray, damp: float):
    """float64 copies of w (N, K) and hessian (K, K) as GPTQ sees them: an input never seen (zero diagonal) gets a
    unit diagonal and zero weights, and the diagonal is raised by damp x its mean."""
    W, Hm = np.array(w, np.float64), np.array(hessian, np.float64)
    dead = np.diag(Hm) <= 0
    Hm[dead, dead] = 1.0
    W[:, dead] = 0.0
    Hm[np.diag_indices(Hm.shape[0])] += damp * float(np.mean(np.diag(Hm)))
    return W, Hm


def output_error(w, u, s16, m16, hessian, fmt: str, damp: float = 0.01) -> np.ndarray:
    """(N,) per row (w - deq)^T H (w - deq): the objective GPTQ and refine lower, under GPTQ's damped hessian."""
    W, Hm = _damped(w, hessian, damp)
    r = _dequant(u, s16, m16, fmt) - W
    return np.einsum("nk,nk->n", r @ Hm, r)


def _dequant(u, s16, m16, fmt):
    """(N, K) float64 values of codes u (N, K) under fp16 scales / offsets (N, K / G), as the kernels read them."""
    G = u.shape[1] // s16.shape[1]
    s = np.repeat(s16.astype(F32).astype(np.float64), G, axis=1)
    if fmt == "int4_asym":
        return s * u + np.repeat(m16.astype(F32).astype(np.float64), G, axis=1)
    return s * levels(fmt)[u]


def refine(w: np.ndarray, u: np.ndarray, s16: np.ndarray, m16: Optional[np.ndarray], hessian: np.ndarray,
           fmt: str = "int4", damp: float = 0.01, passes: int = 2):
    """Lower GPTQ's objective (w - deq)^T H (w - deq) of every row further, in the same format: each pass moves
    single codes by one level where that helps (coordinate descent over the columns, in blocks of a group, the
    residual's product with H updated by BLAS after each block), then refits each group's fp16 scale (and offset)
    to its least error given the codes and the other groups. A change is kept only when it lowers the objective
    as the kernels will compute it (fp16 scales), so no row ends worse than it came. Returns (u, s16, m16) new."""
    asym = fmt == "int4_asym"
    lv = levels(fmt)
    W, Hm = _damped(w, hessian, damp)
    N, K = W.shape
    G = K // s16.shape[1]
    u = u.copy()
    q = lv[u]  # (N, K) each code's value before the scale
    s16, m16 = s16.copy(), None if m16 is None else m16.copy()
    dH = np.diag(Hm)
    for _ in range(passes):
        changed = 0
        sc = np.repeat(s16.astype(F32).astype(np.float64), G, axis=1)
        r = _dequant(u, s16, m16, fmt) - W
        rH = r @ Hm
        for b0 in range(0, K, G):  # codes, one level at a time, column by column
            b1 = b0 + G
            D = np.zeros((N, G))
            for j in range(b0, b1):
                best, step, dval = np.zeros(N), np.zeros(N, np.int64), np.zeros(N)
                for du in (-1, 1):
                    nu = u[:, j].astype(np.int64) + du
                    ok = (nu >= 0) & (nu <= 15)
                    dv = np.where(ok, lv[np.clip(nu, 0, 15)] - q[:, j], 0.0)  # the value's change, one level
                    d = dv * sc[:, j]
                    gain = 2 * d * rH[:, j] + d * d * dH[j]
                    take = ok & (gain < best)
                    best, step, dval = np.where(take, gain, best), np.where(take, du, step), np.where(take, dv, dval)
                if step.any():
                    changed += int(np.count_nonzero(step))
                    u[:, j] = (u[:, j] + step).astype(np.uint8)
                    q[:, j] += dval
                    D[:, j - b0] = dval * sc[:, j]
                    rH[:, b0:b1] += np.outer(D[:, j - b0], Hm[j, b0:b1])
            if D.any():
                rH[:, :b0] += D @ Hm[b0:b1, :b0]
                rH[:, b1:] += D @ Hm[b0:b1, b1:]
        for g in range(K // G):  # each group's scale (and offset), given the codes and the other groups
            sl = slice(g * G, (g + 1) * G)
            qg, Hg = q[:, sl], Hm[sl, sl]
            qH = qg @ Hg
            a, gq = np.einsum("ng,ng->n", qH, qg), np.einsum("ng,ng->n", qg, rH[:, sl])
            if asym:
                b, c, g1 = qH.sum(1), float(Hg.sum()), rH[:, sl].sum(1)
                det = a * c - b * b
                with np.errstate(divide="ignore", invalid="ignore"):
                    ds, dm = (-gq * c + g1 * b) / det, (gq * b - g1 * a) / det
            else:
                with np.errstate(divide="ignore", invalid="ignore"):
                    ds, dm = -gq / a, np.zeros(N)
            old_s = s16[:, g].astype(F32).astype(np.float64)
            new16 = np.where(np.isfinite(ds), old_s + ds, old_s).astype(np.float16)
            ds = new16.astype(F32).astype(np.float64) - old_s
            if asym:
                old_m = m16[:, g].astype(F32).astype(np.float64)
                newm16 = np.where(np.isfinite(dm), old_m + dm, old_m).astype(np.float16)
                dm = newm16.astype(F32).astype(np.float64) - old_m
            dv = ds[:, None] * qg + dm[:, None]  # (N, G) the group's value change
            gain = 2 * np.einsum("ng,ng->n", dv, rH[:, sl]) + np.einsum("ng,ng->n", dv @ Hg, dv)
            take = (gain < 0) & np.isfinite(new16.astype(F32)) & (dv != 0).any(1)
            if asym:
                take &= np.isfinite(newm16.astype(F32))
            if take.any():
                changed += int(np.count_nonzero(take))
                dv[~take] = 0
                s16[take, g] = new16[take]
                if asym:
                    m16[take, g] = newm16[take]
                rH += dv @ Hm[sl, :]
        if not changed:
            break
    return u, s16, m16


def _plain(w: np.ndarray, G: int, fmt: str):
    u, s16, m16 = quantize_weights(np.asarray(w, F32)[None], fmt, G)
    return u[0], s16[0], None if m16 is None else m16[0]


def collect_inputs(model, chunks: np.ndarray) -> Dict[int, tuple]:
    """{layer: (x (T, H) float32 inputs of the MoE layer, Routing)} over the calibration chunks (n, ctx), from the
    model's own routing."""
    from ..experiments.compare import observe_routing
    seen: Dict[int, list] = {i: [] for i in model.moe_layers}
    observe_routing(model, chunks, lambda i, layer, x, r: seen[i].append((x.reshape(-1, layer.hidden_size).copy(), r)))
    out = {}
    for i, parts in seen.items():
        x = np.concatenate([p[0] for p in parts])
        experts = np.concatenate([p[1].experts for p in parts])
        weights = np.concatenate([p[1].weights for p in parts])
        kept = np.concatenate([p[1].kept for p in parts])
        out[i] = (x, experts, weights, kept)
    return out


def calibrate_int4(model, ids, *, ctx: int = 256, max_chunks: Optional[int] = None, group_size: int = 32,
                   min_tokens: Optional[int] = None, damp: float = 0.01, act_order: bool = True,
                   weighted: bool = True, format: str = "int4", refine_passes: int = 2) -> CalibrationReport:
    """Quantize the routed experts of every MoE layer of `model` (float32 or bf16 experts) to calibrated INT4 in
    place, from the router traces of calibration ids (chunks of ctx tokens, as the perplexity runs them).
    format: "int4" (symmetric, 4.5 bits per weight at group_size 32), "int4_asym" (scale and offset per group:
    4.5 bits at group_size 64, 5 at 32) or "int4_nl" (IQ4_NL's non-uniform levels, 4.5 bits at 32).
    min_tokens: experts that saw fewer calibration tokens keep the plain INT4 quantizer (default 2 x group_size).
    act_order: GPTQ's column order by Hessian diagonal (static group scales); weighted: each token's statistics
    weighted by its routing weight squared (else every routed token counts one). refine_passes: passes of `refine`
    after GPTQ (codes by coordinate descent, scales refitted; about GPTQ's own time again; 0: GPTQ alone).
    Returns a CalibrationReport. The model's dtype of the other weights is unchanged; model.quantize becomes
    `format` (calibrated)."""
    from ..eval.perplexity import chunks as make_chunks
    from .layer import MoELayer
    from .packed import PackedOnlyExperts
    from . import quant
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    quant.check_format(format, group_size)
    if isinstance(refine_passes, bool) or not isinstance(refine_passes, (int, np.integer)) or refine_passes < 0:
        raise ValueError(f"refine_passes must be an int >= 0, got {refine_passes!r}")
    G = int(group_size)
    min_tokens = 2 * G if min_tokens is None else int(min_tokens)
    chunked = make_chunks(np.asarray(ids, np.int64).reshape(-1), ctx, None)
    if max_chunks is not None:
        chunked = chunked[:max_chunks]
    if len(chunked) == 0:
        raise ValueError(f"ids: fewer than one chunk of ctx {ctx} calibration tokens")
    inputs = collect_inputs(model, chunked)
    report = CalibrationReport()
    for i, layer in list(model.moe_layers.items()):
        if layer.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"layer {i}: its experts are {layer.dtype}; calibrate a float32 / bf16 model")
        ex = layer.experts.as_float32() if hasattr(layer.experts, "as_float32") else layer.experts
        E, H, I = ex.shape
        if H % G or I % G:
            raise ValueError(f"group_size {G} must divide H = {H} and I = {I}")
        x, experts, weights, kept = inputs[i]
        gated = ex.gate is not None
        names = ("gate", "up") if gated else ("up",)
        asym = format == "int4_asym"
        codes = {n: np.empty((E, I, H), np.uint8) for n in names}
        scales = {n: np.empty((E, I, H // G), np.float16) for n in names}
        offsets = {n: np.empty((E, I, H // G), np.float16) for n in names}
        codes["down"], scales["down"] = np.empty((E, H, I), np.uint8), np.empty((E, H, I // G), np.float16)
        offsets["down"] = np.empty((E, H, I // G), np.float16)
        counts = np.zeros(E, np.int64)
        n_cal = 0
        for e in range(E):
            tok, slot = np.nonzero((experts == e) & kept)
            counts[e] = tok.size
            mats = {n: getattr(ex, n)[e] for n in names}
            mats["down"] = ex.down[e]
            if tok.size < min_tokens:
                for n, w in mats.items():
                    codes[n][e], scales[n][e], m = _plain(w, G, format)
                    if asym:
                        offsets[n][e] = m
                continue
            n_cal += 1
            wt = weights[tok, slot].astype(np.float64)[:, None] if weighted else np.ones((tok.size, 1))
            xe = x[tok].astype(np.float64)
            h_in = (xe * wt).T @ (xe * wt)  # (H, H): gate / up inputs
            he = expert_hidden(xe, ex, e)
            h_down = (he * wt).T @ (he * wt)  # (I, I): down's inputs
            for n in names + ("down",):
                hn = h_down if n == "down" else h_in
                u, sc, m = gptq(mats[n], hn, G, damp, act_order, format)
                if refine_passes:
                    u, sc, m = refine(mats[n], u, sc, m, hn, format, damp, refine_passes)
                codes[n][e], scales[n][e] = u, sc
                if asym:
                    offsets[n][e] = m
        report.calibrated[i], report.fallback[i], report.tokens[i] = n_cal, E - n_cal, counts
        P = len(names)
        bb = quant.block_bytes(format, G)
        n_in = -(-I // 16) * (H // G) * P * bb
        w_in = np.zeros(E * n_in, np.uint8)
        off = lambda n: offsets[n] if asym else None  # noqa: E731
        for p, n in enumerate(names):
            pack_blocks(codes[n], scales[n], off(n), format, G, P=P, p=p, out=w_in)
        w_out = pack_blocks(codes["down"], scales["down"], off("down"), format, G)
        packed = PackedOnlyExperts(E, H, I, gated, ex.activation, float(ex.alpha), float(ex.limit), format, G,
                                   w_in, w_out, _f32(ex.gate_bias), _f32(ex.up_bias), _f32(ex.down_bias))
        new = MoELayer(layer.router, layer.router_weight, packed, shared=layer.shared,
                       shared_gate_weight=layer.shared_gate_weight, router_bias=layer.router_bias,
                       selection_bias=layer.selection_bias, scale_input=layer.scale_input, dtype=format,
                       family=layer.family, group_size=G, shared_dtype=layer.shared_dtype)
        next(l for l in model.layers if l.index == i).ffn = new
    model.quantize, model.group_size = format, G
    return report


def _f32(b):
    return None if b is None else np.ascontiguousarray(b, np.float32)
