"""scaled(): a tiny instance of a ModelConfig's design, for random-weight experiments and tests."""
from __future__ import annotations

import dataclasses
from typing import List, Optional, Tuple

from . import mamba as _mamba


def scaled(cfg, *, num_layers: Optional[int] = None, hidden_size: int = 64, num_heads: int = 4,
           head_dim: Optional[int] = None, num_experts: Optional[int] = None, top_k: Optional[int] = None,
           expert_intermediate_size: int = 32, dense_intermediate_size: int = 128, vocab_size: int = 128,
           name: Optional[str] = None) :
    """A small instance of the same design, for random-weight experiments and tests.

    Keeps the family, the router's kind (scoring, normalisation, scale, group-limited selection with fewer
    groups), MLA vs GQA and the KV-head ratio, biases and norms, shared experts (same width ratio to a
    routed expert), the shared gate, Arctic's residual MLP, dense-first layers (one), MoE interleaving,
    local attention, encoder-decoder split. By default: 2 layers (one dense and one MoE where the design
    has both), hidden 64, 4 heads, min(E, 8) experts, top-k at most E/2, expert width 32, vocabulary 128.
    A hybrid design (layer_mixers / layer_ffns) keeps its layer pattern: by default the shortest prefix that has
    every (mixer, feed-forward) combination of the design, with smaller Mamba sizes (and a dense width equal to
    the expert width where the design has one width for both, as Jamba).
    The vision tower and unmodelled config.json fields are dropped."""
    step = cfg.moe_every
    mlp_only: Tuple[int, ...] = ()
    fd = 0
    if cfg.is_encoder_decoder:
        L = num_layers if num_layers is not None else 2 * step
        enc = max(1, L // 2)
    else:
        enc = 0
        fd = min(cfg.first_dense_layers, 1)
        L = num_layers if num_layers is not None else max(2, fd + step)
        if cfg.mlp_only_layers:
            mlp_only = (0,)
            L = max(L, 2) if num_layers is None else L
        fd = min(fd, L - 1)
    hybrid = bool(cfg.layer_mixers or cfg.layer_ffns)
    mixers: Tuple[str, ...] = ()
    ffns: Tuple[str, ...] = ()
    if hybrid:
        pattern = _hybrid_pattern(cfg, num_layers)
        L, fd, step, mlp_only = len(pattern), 0, 1, ()
        mixers = tuple(m for m, _ in pattern) if cfg.layer_mixers else ()
        ffns = tuple(f for _, f in pattern)
    H = int(hidden_size)
    nh = int(num_heads)
    nkv = max(1, nh * cfg.num_kv_heads // cfg.num_heads)
    while nh % nkv:
        nkv -= 1
    E = int(num_experts) if num_experts is not None else min(cfg.num_experts, 8)
    k = int(top_k) if top_k is not None else min(cfg.top_k, max(1, E // 2))
    r = cfg.router
    g, tg = r.n_group, r.topk_group
    if g > 1:
        g2 = max(d for d in range(1, min(g, 4) + 1) if E % d == 0)
        tg2 = max(1, min(g2, round(tg * g2 / g)))
        if g2 > 1 and tg2 == g2:
            tg2 = g2 - 1 if g2 > 2 else g2
        g, tg = g2, tg2
        k = min(k, tg * (E // g))
    router = dataclasses.replace(r, top_k=k, num_experts=E, n_group=g, topk_group=tg)
    I = int(expert_intermediate_size)
    shared = 0
    if cfg.shared_intermediate_size:
        shared = max(1, round(cfg.shared_intermediate_size * I / cfg.expert_intermediate_size))
    local = 0
    if cfg.local_attention_layers:
        n_attn = sum(1 for m in mixers if m == "attention") if mixers else L
        local = min(n_attn, max(1, round(cfg.local_attention_layers * L / cfg.num_layers)))
    dense = int(dense_intermediate_size) if cfg.dense_intermediate_size else 0
    if hybrid and cfg.dense_intermediate_size == cfg.expert_intermediate_size:
        dense = I
    mamba = None
    if cfg.mamba is not None:
        kinds = tuple(k for k in ("mamba", "mamba2") if k in mixers)
        mamba = _mamba.scaled(cfg.mamba, kinds, H, cfg.hidden_size)
    kw = dict(
        name=name or f"{cfg.name}-scaled", family=cfg.family, vocab_size=int(vocab_size), hidden_size=H,
        num_layers=L, num_heads=nh, num_kv_heads=nkv, head_dim=head_dim, attention_bias=cfg.attention_bias,
        qk_norm=cfg.qk_norm, attention_sinks=cfg.attention_sinks, local_attention_layers=local,
        local_attention_window=min(cfg.local_attention_window, 16) if local else 0, first_dense_layers=fd,
        moe_every=step, mlp_only_layers=mlp_only,
        dense_intermediate_size=dense, layer_mixers=mixers, layer_ffns=ffns, mamba=mamba,
        dense_glu=cfg.dense_glu, num_experts=E, top_k=k, expert_intermediate_size=I, expert_glu=cfg.expert_glu,
        expert_bias=cfg.expert_bias, num_shared_experts=cfg.num_shared_experts, shared_intermediate_size=shared,
        shared_expert_gate=cfg.shared_expert_gate,
        residual_intermediate_size=max(1, round(cfg.residual_intermediate_size * H / cfg.hidden_size))
        if cfg.residual_intermediate_size else 0,
        moe_latent_size=max(1, round(cfg.moe_latent_size * H / cfg.hidden_size)) if cfg.moe_latent_size else 0,
        mlp_bias=cfg.mlp_bias, router=router, router_bias=cfg.router_bias, selection_bias=cfg.selection_bias,
        tie_embeddings=cfg.tie_embeddings, encoder_layers=enc, mtp_layers=min(cfg.mtp_layers, 1),
        max_context=min(cfg.max_context, 2048), activation=cfg.activation)
    if cfg.is_mla:
        kw.update(q_lora_rank=32 if cfg.q_lora_rank else 0, kv_lora_rank=32, qk_nope_head_dim=16,
                  qk_rope_head_dim=8, v_head_dim=16)
    return type(cfg)(**kw)


def _hybrid_pattern(cfg, num_layers: Optional[int]) -> List[Tuple[str, str]]:
    """(mixer, ffn) of each layer of a scaled hybrid design: the first `num_layers` layers of the design if they hold
    an MoE block, else its shortest prefix with every combination, repeated to `num_layers` (default: once)."""
    kinds = [(cfg.mixer(i), cfg.ffn(i)) for i in range(cfg.num_layers)]
    seen, n = set(), 0
    for i, k in enumerate(kinds):
        if k not in seen:
            seen.add(k)
            n = i + 1
    base = kinds[:n]
    if num_layers is None:
        return base
    L = int(num_layers)
    head = kinds[:L]
    if len(head) == L and any(f == "moe" for _, f in head):
        return head
    return [base[i % len(base)] for i in range(L)]
