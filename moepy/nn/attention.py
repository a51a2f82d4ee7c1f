"""Self-attention over a KV cache: MHA / GQA (every Llama-style family, DBRX's fused Wqkv) and DeepSeek's MLA.

Shapes: B batch rows, T new tokens, S = cached + new tokens, Hq query heads, Hkv key/value heads (g = Hq / Hkv
query heads share one), D head dim. The attention itself is the C kernel _ops.attention (csrc/kernels/attention.c):
scores = (Q K^T) * scale over the allowed keys (Step.allowed, a boolean mask), a max-subtracted float32 softmax, times
V; query head h reads key/value head h // g; gpt-oss's sinks join the softmax's max and denominator and are dropped
after it. It reads the cached keys and values in place and gives each query row bitwise the same result for any T,
thread count and ISA. transformers' eager form adds finfo(float32).min instead of skipping keys: the same numbers
for every query that may read at least one key; a query that may read none (a left pad) gets zeros here, a uniform
average there.
MLA caches one row [latent | rotated rope key] (kv_lora_rank + qk_rope_head_dim numbers) per token. Short steps
(decoding) run in the absorbed form: the key up-projection folded into the query (q = [q_nope W_uk | q_pe]), the
cached rows as the keys of one shared head and their first kv_lora_rank columns as its values, the value
up-projection applied after the softmax. Prefill expands the latents into per-head keys [k_nope | k_pe] and values.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .. import _ops
from .layers import Linear, rms_norm
from .rope import Rope
from .spec import AttentionSpec

ABSORB_MAX_TOKENS = 8  # MLA steps of at most this many new tokens run in the absorbed form


def build_allowed(start: int, T: int, valid: np.ndarray, pad: np.ndarray, window: int, chunk: int) -> np.ndarray:
    """Boolean mask (B, T, S): True where query start + t may read key j. valid (B, S) marks real tokens; pad (B,)
    left pads (chunks are aligned to each row's first real token)."""
    B, S = valid.shape
    q = np.arange(start, start + T)[:, None]
    j = np.arange(S)[None, :]
    allowed = (j <= q)[None] & valid[:, None, :]
    if window:
        allowed &= (j > q - window)[None]
    if chunk:
        p = pad[:, None, None]
        allowed &= ((j[None] - p) // chunk) == ((q[None] - p) // chunk)
    return allowed


class _Projections:
    """The Linears of an attention layer by attribute name, and their replacement (quantize_projections)."""

    def projections(self) -> dict:
        """The Linears this layer owns, by attribute name."""
        return {name: v for name, v in vars(self).items() if isinstance(v, Linear)}

    def set_projection(self, name: str, linear: Linear) -> None:
        """Replace the projection `name` of projections()."""
        setattr(self, name, linear)


class GQAAttention(_Projections):
    """MHA / GQA / MQA with the options of AttentionSpec (biases, q/k norms, clip_qkv, RoPE or NoPE with Llama 4's
    temperature, sinks). Weights: q, k, v, o Linears (or one fused qkv), q_norm / k_norm weights, sinks (Hq,).
    Separate q, k and v are held as one fused Linear when their output counts are multiples of 16 (one kernel
    call; every output bitwise the same); the q, k and v attributes are then views of it."""

    def __init__(self, spec: AttentionSpec, q: Optional[Linear], k: Optional[Linear], v: Optional[Linear],
                 o: Linear, *, rope: Optional[Rope] = None, qkv: Optional[Linear] = None, q_norm=None, k_norm=None,
                 sinks=None):
        self.spec = spec
        self.o = o
        self.q_norm, self.k_norm, self.sinks = q_norm, k_norm, sinks
        self.rope = rope
        self._set_projections(q, k, v, qkv)

    def _set_projections(self, q, k, v, qkv) -> None:
        # separate q, k and v are joined into one Linear where their packed panels concatenate (one kernel call per
        # step, the same bits); self.q / .k / .v then read back as views of it
        if qkv is None and q is not None:
            qkv = Linear.concat([q, k, v])
        self.qkv = qkv
        self._qkv_parts = (None, None, None) if qkv is not None else (q, k, v)

    def _part(self, i: int) -> Optional[Linear]:
        if self.qkv is None:
            return self._qkv_parts[i]
        s = self.spec
        bounds = (0, s.num_heads * s.head_dim, (s.num_heads + s.num_kv_heads) * s.head_dim,
                  (s.num_heads + 2 * s.num_kv_heads) * s.head_dim)
        return self.qkv.rows(bounds[i], bounds[i + 1])

    q = property(lambda self: self._part(0), doc="The query projection (a view of the fused one when fused).")
    k = property(lambda self: self._part(1), doc="The key projection.")
    v = property(lambda self: self._part(2), doc="The value projection.")

    def projections(self) -> dict:
        out = {"o": self.o}
        if self.qkv is not None:
            out["qkv"] = self.qkv
        else:
            out.update(zip("qkv", self._qkv_parts))
        return out

    def set_projection(self, name: str, linear: Linear) -> None:
        if name == "o":
            self.o = linear
        elif name == "qkv":
            self._set_projections(None, None, None, linear)
        else:
            parts = {"q": self.q, "k": self.k, "v": self.v, name: linear}
            self._set_projections(parts["q"], parts["k"], parts["v"], None)

    def cache_shapes(self) -> tuple:
        """Shapes of what this layer caches, None at the token axis: keys and values head-major (Hkv, S, D)."""
        s = self.spec
        return ((s.num_kv_heads, None, s.head_dim), (s.num_kv_heads, None, s.head_dim))

    def __call__(self, x: np.ndarray, step, layer: int) -> np.ndarray:
        """x (B, T, H) normalised hidden states -> (B, T, H); `step` (moepy.nn.decoder.Step) holds the positions,
        masks, cos/sin and the cache of this call."""
        s = self.spec
        B, T, _ = x.shape
        Hq, Hkv, D = s.num_heads, s.num_kv_heads, s.head_dim
        if self.qkv is not None:
            qkv = self.qkv(x)
            q, k, v = qkv[..., :Hq * D], qkv[..., Hq * D:(Hq + Hkv) * D], qkv[..., (Hq + Hkv) * D:]
        else:
            q, k, v = (lin(x) for lin in self._qkv_parts)
        if s.fused_qkv:  # DBRX: clip the fused projection (it has no q/k norm)
            if s.clip_qkv is not None:
                np.clip(qkv, -s.clip_qkv, s.clip_qkv, out=qkv)
        else:
            if s.qk_norm == "proj":
                q, k = rms_norm(q, self.q_norm, s.qk_norm_eps), rms_norm(k, self.k_norm, s.qk_norm_eps)
            if s.clip_qkv is not None:
                q, k, v = (np.clip(a, -s.clip_qkv, s.clip_qkv) for a in (q, k, v))
        q = q.reshape(B, T, Hq, D)
        k = k.reshape(B, T, Hkv, D)
        v = np.ascontiguousarray(v).reshape(B, T, Hkv, D)
        if s.qk_norm == "head":
            q, k = rms_norm(q, self.q_norm, s.qk_norm_eps), rms_norm(k, self.k_norm, s.qk_norm_eps)
        if self.rope is not None:
            cos, sin = step.cos_sin(self.rope)
            q, k = self.rope.rotate(q, cos, sin), self.rope.rotate(k, cos, sin)
            if s.qk_norm == "l2":
                q, k = rms_norm(q, None, s.qk_norm_eps), rms_norm(k, None, s.qk_norm_eps)
        elif s.temperature is not None:
            attn_scale, floor_scale = s.temperature
            p = step.positions.astype(np.float32)
            t = np.log1p(np.floor((p + np.float32(1.0)) / np.float32(floor_scale))) * np.float32(attn_scale) \
                + np.float32(1.0)
            q = q * t[:, :, None, None].astype(np.float32)
        K, V = step.cache.append(layer, k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3))  # (B, Hkv, S, D)
        allowed = step.allowed(s.window, s.chunk)
        out = _ops.attention(q.transpose(0, 2, 1, 3), K, V, allowed, s.scaling, self.sinks)  # (B, Hq, T, D)
        out = out.transpose(0, 2, 1, 3).reshape(B, T, Hq * D)
        return self.o(out)


class MLAAttention(_Projections):
    """DeepSeek-V2/V3 multi-head latent attention. Weights: q (q_lora_rank 0) or q_a / q_a_norm / q_b; kv_a
    (kv_lora_rank + rope dims), kv_a_norm; kv_b (Hq * (dn + dv), r) as float32 (H, dn + dv, r); o."""

    def __init__(self, spec: AttentionSpec, *, q=None, q_a=None, q_a_norm=None, q_b=None, kv_a: Linear, kv_a_norm,
                 kv_b: np.ndarray, o: Linear, rope: Rope):
        self.spec = spec
        self.q, self.q_a, self.q_a_norm, self.q_b = q, q_a, q_a_norm, q_b
        self.kv_a, self.kv_a_norm, self.o = kv_a, kv_a_norm, o
        H, dn, dv = spec.num_heads, spec.qk_nope_head_dim, spec.v_head_dim
        w = np.asarray(kv_b, np.float32).reshape(H, dn + dv, spec.kv_lora_rank)
        self.w_uk = np.ascontiguousarray(w[:, :dn])  # (H, dn, r)
        self.w_uv = np.ascontiguousarray(w[:, dn:])  # (H, dv, r)
        self.rope = rope

    def cache_shapes(self) -> tuple:
        """Per-token shape of what this layer caches: one row [latent (r) | rotated rope key (dr)], so the absorbed
        attention reads it as the keys and its first r columns as the values (no copy)."""
        return ((self.spec.kv_lora_rank + self.spec.qk_rope_head_dim,),)

    def __call__(self, x: np.ndarray, step, layer: int) -> np.ndarray:
        """x (B, T, H) normalised hidden states -> (B, T, H) (`step` as for GQAAttention)."""
        s = self.spec
        B, T, _ = x.shape
        H, dn, dr, dv, r = s.num_heads, s.qk_nope_head_dim, s.qk_rope_head_dim, s.v_head_dim, s.kv_lora_rank
        q = self.q(x) if self.q is not None else self.q_b(rms_norm(self.q_a(x), self.q_a_norm, s.latent_eps))
        q = q.reshape(B, T, H, dn + dr)
        ckv = self.kv_a(x)
        latent = rms_norm(ckv[..., :r], self.kv_a_norm, s.latent_eps)
        cos, sin = step.cos_sin(self.rope)
        q_pe = self.rope.rotate(q[..., dn:], cos, sin)  # (B, T, H, dr)
        k_pe = self.rope.rotate(ckv[..., None, r:], cos, sin)[:, :, 0]  # (B, T, dr)
        (CK,) = step.cache.append(layer, np.concatenate([latent, k_pe], axis=-1))  # (B, S, r + dr)
        allowed = step.allowed(s.window, s.chunk)
        q_nope = q[..., :dn].transpose(0, 2, 1, 3)  # (B, H, T, dn)
        q_pe = q_pe.transpose(0, 2, 1, 3)  # (B, H, T, dr)
        if T <= ABSORB_MAX_TOKENS:
            q_lat = np.matmul(q_nope, self.w_uk[None])  # (B, H, T, r)
            qa = np.concatenate([q_lat, q_pe], axis=-1)  # (B, H, T, r + dr)
            K = CK[:, None]  # (B, 1, S, r + dr): one key/value head shared by all H query heads
            o_lat = _ops.attention(qa, K, K[..., :r], allowed, s.scaling)  # (B, H, T, r)
            out = np.matmul(o_lat, self.w_uv[None].transpose(0, 1, 3, 2))  # (B, H, T, dv)
        else:
            C = CK[:, None, :, :r]  # (B, 1, S, r)
            S = CK.shape[1]
            k_nope = np.matmul(C, self.w_uk[None].transpose(0, 1, 3, 2))  # (B, H, S, dn)
            k = np.concatenate([k_nope, np.broadcast_to(CK[:, None, :, r:], (B, H, S, dr))], axis=-1)
            v = np.matmul(C, self.w_uv[None].transpose(0, 1, 3, 2))  # (B, H, S, dv)
            qe = np.concatenate([q_nope, q_pe], axis=-1)  # (B, H, T, dn + dr)
            out = _ops.attention(qe, k, v, allowed, s.scaling)  # (B, H, T, dv)
        return self.o(out.transpose(0, 2, 1, 3).reshape(B, T, H * dv))
