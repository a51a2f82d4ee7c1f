"""Self-attention over a KV cache: MHA / GQA (every Llama-style family, DBRX's fused Wqkv) and DeepSeek's MLA.

Shapes: B batch rows, T new tokens, S = cached + new tokens, Hq query heads, Hkv key/value heads (g = Hq / Hkv
query heads share one), D head dim. Eager attention as transformers computes it (model_semantics.md section 0):
scores = (Q K^T) * scale + mask (0 or finfo(float32).min), softmax in float32, times V. Query head h reads
key/value head h // g. gpt-oss's sinks join the softmax's max and denominator and are dropped after it.
MLA prefill expands the cached latents into per-head keys and values; short steps (decoding) run in the
absorbed form (the key up-projection folded into the query, the value up-projection applied after the
softmax), which reads only the kv_lora_rank + qk_rope_head_dim numbers cached per token.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .layers import Linear, rms_norm
from .rope import Rope
from .spec import AttentionSpec

NEG = np.float32(np.finfo(np.float32).min)
ABSORB_MAX_TOKENS = 8  # MLA steps of at most this many new tokens run in the absorbed form


def softmax(s: np.ndarray) -> np.ndarray:
    """float32 softmax over the last axis (in place on s)."""
    s -= s.max(axis=-1, keepdims=True)
    np.exp(s, out=s)
    s /= s.sum(axis=-1, keepdims=True)
    return s


def build_mask(start: int, T: int, valid: np.ndarray, pad: np.ndarray, window: int, chunk: int) -> np.ndarray:
    """Additive mask (B, T, S): 0 where query start + t may read key j, finfo.min elsewhere. valid (B, S) marks
    real tokens; pad (B,) left pads (chunks are aligned to each row's first real token)."""
    B, S = valid.shape
    q = np.arange(start, start + T)[:, None]
    j = np.arange(S)[None, :]
    allowed = (j <= q)[None] & valid[:, None, :]
    if window:
        allowed &= (j > q - window)[None]
    if chunk:
        p = pad[:, None, None]
        allowed &= ((j[None] - p) // chunk) == ((q[None] - p) // chunk)
    return np.where(allowed, np.float32(0.0), NEG).astype(np.float32)


class GQAAttention:
    """MHA / GQA / MQA with the options of AttentionSpec (biases, q/k norms, clip_qkv, RoPE or NoPE with Llama 4's
    temperature, sinks). Weights: q, k, v, o Linears (or one fused qkv), q_norm / k_norm weights, sinks (Hq,)."""

    def __init__(self, spec: AttentionSpec, q: Optional[Linear], k: Optional[Linear], v: Optional[Linear],
                 o: Linear, *, rope: Optional[Rope] = None, qkv: Optional[Linear] = None, q_norm=None, k_norm=None,
                 sinks=None):
        self.spec = spec
        self.q, self.k, self.v, self.o, self.qkv = q, k, v, o, qkv
        self.q_norm, self.k_norm, self.sinks = q_norm, k_norm, sinks
        self.rope = rope

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
            if s.clip_qkv is not None:
                np.clip(qkv, -s.clip_qkv, s.clip_qkv, out=qkv)
            q, k, v = np.split(qkv, [Hq * D, Hq * D + Hkv * D], axis=-1)
        else:
            q, k, v = self.q(x), self.k(x), self.v(x)
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
            q, k = self.rope.apply(q, cos, sin), self.rope.apply(k, cos, sin)
            if s.qk_norm == "l2":
                q, k = rms_norm(q, None, s.qk_norm_eps), rms_norm(k, None, s.qk_norm_eps)
        elif s.temperature is not None:
            attn_scale, floor_scale = s.temperature
            p = step.positions.astype(np.float32)
            t = np.log1p(np.floor((p + np.float32(1.0)) / np.float32(floor_scale))) * np.float32(attn_scale) \
                + np.float32(1.0)
            q = q * t[:, :, None, None].astype(np.float32)
        K, V = step.cache.append(layer, k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3))  # (B, Hkv, S, D)
        mask = step.mask(s.window, s.chunk)
        g = Hq // Hkv
        qh = np.ascontiguousarray(q.reshape(B, T, Hkv, g, D).transpose(0, 2, 3, 1, 4)).reshape(B, Hkv, g * T, D)
        scores = np.matmul(qh, K.transpose(0, 1, 3, 2)).reshape(B, Hkv, g, T, -1)
        scores *= np.float32(s.scaling)
        scores += mask[:, None, None]
        if self.sinks is not None:
            sink = np.broadcast_to(self.sinks.reshape(1, Hkv, g, 1, 1), (B, Hkv, g, T, 1))
            probs = softmax(np.concatenate([scores, sink], axis=-1))[..., :-1]
        else:
            probs = softmax(scores)
        out = np.matmul(np.ascontiguousarray(probs).reshape(B, Hkv, g * T, -1), V)
        out = out.reshape(B, Hkv, g, T, D).transpose(0, 3, 1, 2, 4).reshape(B, T, Hq * D)
        return self.o(out)


class MLAAttention:
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
        """Per-token shapes of what this layer caches: the latent (r,) and the rotated rope key (dr,)."""
        return ((self.spec.kv_lora_rank,), (self.spec.qk_rope_head_dim,))

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
        q_pe = self.rope.apply(np.ascontiguousarray(q[..., dn:]), cos, sin)  # (B, T, H, dr)
        k_pe = self.rope.apply(np.ascontiguousarray(ckv[..., None, r:]), cos, sin)[:, :, 0]  # (B, T, dr)
        C, KP = step.cache.append(layer, latent, k_pe)  # (B, S, r), (B, S, dr)
        mask = step.mask(s.window, s.chunk)
        q_nope = q[..., :dn].transpose(0, 2, 1, 3)  # (B, H, T, dn)
        q_pe = q_pe.transpose(0, 2, 1, 3)  # (B, H, T, dr)
        rope_scores = np.matmul(q_pe, KP[:, None].transpose(0, 1, 3, 2))  # (B, H, T, S)
        if T <= ABSORB_MAX_TOKENS:
            q_lat = np.matmul(q_nope, self.w_uk[None])  # (B, H, T, r)
            scores = np.matmul(q_lat, C[:, None].transpose(0, 1, 3, 2)) + rope_scores
        else:
            k_nope = np.matmul(C[:, None], self.w_uk[None].transpose(0, 1, 3, 2))  # (B, H, S, dn)
            scores = np.matmul(q_nope, k_nope.transpose(0, 1, 3, 2)) + rope_scores
        scores *= np.float32(s.scaling)
        scores += mask[:, None]
        probs = softmax(scores)
        if T <= ABSORB_MAX_TOKENS:
            o_lat = np.matmul(probs, C[:, None])  # (B, H, T, r)
            out = np.matmul(o_lat, self.w_uv[None].transpose(0, 1, 3, 2))  # (B, H, T, dv)
        else:
            v = np.matmul(C[:, None], self.w_uv[None].transpose(0, 1, 3, 2))  # (B, H, S, dv)
            out = np.matmul(probs, v)
        return self.o(out.transpose(0, 2, 1, 3).reshape(B, T, H * dv))
