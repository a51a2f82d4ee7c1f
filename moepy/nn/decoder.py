"""The decoder layers and one forward step: h = x + Attn(N1(x)); out = h + FFN(N2(h)) (every family's pre-norm
block), built from a checkpoint's tensors by the DecoderSpec of its family.

Step carries what the layers of one call share: the RoPE positions (from the padding mask, so a left-padded row
computes what the row alone computes), one mask per kind of attention (full, sliding window, chunk), one cos/sin per
RoPE, and the cache the layers append to.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional

import numpy as np

from ..families._checkpoint import Tensors
from .attention import GQAAttention, MLAAttention, build_allowed
from .layers import DenseMLP, Linear, layer_norm, rms_norm, vector, weight_array
from .rope import Rope
from .spec import DecoderSpec, LayerSpec


class Step:
    """One forward call: positions (B, T), the cache, and masks / cos-sin computed once and shared by the layers."""

    def __init__(self, cache, valid_new: np.ndarray):
        self.cache = cache
        B, T = valid_new.shape
        self.start = cache.begin_step(valid_new)
        self.valid = cache.valid_through(self.start + T)
        self.pad = cache.pads(valid_new)
        pos = cache.seen[:, None] + np.cumsum(valid_new, axis=1) - 1
        self.positions = np.maximum(pos, 0).astype(np.int64)
        self.T = T
        self._masks: Dict[tuple, np.ndarray] = {}
        self._cos_sin: Dict[int, tuple] = {}

    def allowed(self, window: int, chunk: int) -> np.ndarray:
        """The boolean (B, T, S) mask of attention with this window / chunk (True: query t may read key j)."""
        key = (window, chunk)
        if key not in self._masks:
            self._masks[key] = build_allowed(self.start, self.T, self.valid, self.pad, window, chunk)
        return self._masks[key]

    def cos_sin(self, rope: Rope) -> tuple:
        """cos, sin (B, T, dim / 2) of `rope` at this step's positions."""
        key = id(rope)
        if key not in self._cos_sin:
            self._cos_sin[key] = rope.cos_sin(self.positions)
        return self._cos_sin[key]


class DecoderLayer:
    """One layer: attention (GQAAttention / MLAAttention), its two pre-norm weights, and the feed-forward block
    (a moepy MoELayer or a DenseMLP)."""

    def __init__(self, index: int, spec: LayerSpec, attention, attn_norm: np.ndarray, ffn_norm: np.ndarray, ffn,
                 norm: str, eps: float):
        self.index, self.spec = index, spec
        self.attention, self.attn_norm, self.ffn_norm, self.ffn = attention, attn_norm, ffn_norm, ffn
        self._norm = (lambda x, w: layer_norm(x, w)) if norm == "layer" else (lambda x, w: rms_norm(x, w, eps))

    @property
    def is_moe(self) -> bool:
        """True if the feed-forward block is an MoE block."""
        return self.spec.ffn == "moe"

    def __call__(self, x: np.ndarray, step: Step, routing: Optional[dict]) -> np.ndarray:
        """x (B, T, H) -> (B, T, H); the MoE layer's Routing goes to routing[index] when routing is a dict."""
        h = x + self.attention(self._norm(x, self.attn_norm), step, self.index)
        y = self._norm(h, self.ffn_norm)
        B, T, H = y.shape
        if self.is_moe:
            if routing is not None:
                out, routing[self.index] = self.ffn(y, return_routing=True)
            else:
                out = self.ffn(y)
        else:
            out = self.ffn(np.ascontiguousarray(y.reshape(B * T, H)))
        return h + out.reshape(B, T, H)


def find_root(tensors: Mapping, rel: str) -> str:
    """The prefix under which the checkpoint stores `rel` ("model.", "transformer.", "model.language_model."...):
    the shortest key equal to rel or ending in "." + rel. KeyError naming rel when none does."""
    hits = [k for k in tensors.keys() if k == rel or k.endswith("." + rel)]
    if not hits:
        raise KeyError(f"checkpoint tensor {rel!r} not found (under any prefix)")
    hits.sort(key=len)
    return hits[0][: len(hits[0]) - len(rel)]


class Loader:
    """Reads the non-expert tensors of a DecoderSpec from a checkpoint mapping, checking every shape."""

    def __init__(self, spec: DecoderSpec, tensors: Mapping, dtype: str):
        self.spec, self.tensors, self.dtype = spec, tensors, dtype
        self.root = find_root(tensors, spec.names.embed)
        self.T = Tensors(tensors, self.root)
        self.ropes: Dict[object, Rope] = {}

    def rope(self, rope_spec) -> Optional[Rope]:
        """One Rope per distinct RopeSpec (layers sharing a spec share its cos / sin)."""
        if rope_spec is None:
            return None
        if rope_spec not in self.ropes:
            self.ropes[rope_spec] = Rope(rope_spec)
        return self.ropes[rope_spec]

    def matrix(self, name: str, shape, dtype: Optional[str] = None) -> np.ndarray:
        return weight_array(self.T.get(name), dtype or self.dtype, self.root + name, shape)

    def vec(self, name: str, size: int) -> np.ndarray:
        return vector(self.T.get(name), self.root + name, size)

    def linear(self, name: str, out: int, inp: int, bias: bool) -> Linear:
        b = self.vec(name + ".bias", out) if bias else None
        return Linear(self.matrix(name + ".weight", (out, inp)), b)

    def attention(self, i: int, ls: LayerSpec):
        s, n, Hd = ls.attention, self.spec.names, self.spec.hidden_size
        a = n.layer.format(i=i) + n.attn
        if s.kind == "mla":
            Hq, dn, dr, dv, r = s.num_heads, s.qk_nope_head_dim, s.qk_rope_head_dim, s.v_head_dim, s.kv_lora_rank
            qd = Hq * (dn + dr)
            kw = {}
            if s.q_lora_rank:
                kw.update(q_a=self.linear(a + "q_a_proj", s.q_lora_rank, Hd, s.qkv_bias),
                          q_a_norm=self.vec(a + "q_a_layernorm.weight", s.q_lora_rank),
                          q_b=self.linear(a + "q_b_proj", qd, s.q_lora_rank, False))
            else:
                kw.update(q=self.linear(a + "q_proj", qd, Hd, False))
            return MLAAttention(s, kv_a=self.linear(a + "kv_a_proj_with_mqa", r + dr, Hd, s.qkv_bias),
                                kv_a_norm=self.vec(a + "kv_a_layernorm.weight", r),
                                kv_b=self.matrix(a + "kv_b_proj.weight", (Hq * (dn + dv), r), "float32"),
                                o=self.linear(a + "o_proj", Hd, Hq * dv, s.o_bias), rope=self.rope(s.rope), **kw)
        Hq, Hkv, D = s.num_heads, s.num_kv_heads, s.head_dim
        o = self.linear(a + n.o, Hd, Hq * D, s.o_bias)
        kw = dict(rope=self.rope(s.rope))
        if s.fused_qkv:
            kw["qkv"] = self.linear(a + n.qkv, (Hq + 2 * Hkv) * D, Hd, s.qkv_bias)
            q = k = v = None
        else:
            q = self.linear(a + n.q, Hq * D, Hd, s.qkv_bias)
            k = self.linear(a + n.k, Hkv * D, Hd, s.qkv_bias)
            v = self.linear(a + n.v, Hkv * D, Hd, s.qkv_bias)
        if s.qk_norm in ("head", "proj"):
            qn, kn = (D, D) if s.qk_norm == "head" else (Hq * D, Hkv * D)
            kw.update(q_norm=self.vec(a + "q_norm.weight", qn), k_norm=self.vec(a + "k_norm.weight", kn))
        if s.sinks:
            kw["sinks"] = self.vec(a + "sinks", Hq)
        return GQAAttention(s, q, k, v, o, **kw)

    def dense_mlp(self, i: int, ls: LayerSpec, dtype: str) -> DenseMLP:
        n, Hd, I = self.spec.names, self.spec.hidden_size, ls.dense_intermediate_size
        p = n.layer.format(i=i) + n.mlp
        shapes = {"gate_proj": (I, Hd), "up_proj": (I, Hd), "down_proj": (Hd, I)}
        w = {k: self.matrix(f"{p}{k}.weight", sh, "bfloat16" if dtype == "bfloat16" else "float32")
             for k, sh in shapes.items()}
        biases = tuple(self.vec(f"{p}{k}.bias", sh[0]) if ls.dense_bias else None for k, sh in shapes.items())
        return DenseMLP(w["gate_proj"], w["up_proj"], w["down_proj"], activation=self.spec.activation,
                        biases=biases, dtype=dtype)

    def norms(self, i: int):
        n, Hd = self.spec.names, self.spec.hidden_size
        p = n.layer.format(i=i)
        return self.vec(p + n.attn_norm, Hd), self.vec(p + n.ffn_norm, Hd)
