"""scaled(): a tiny instance of a ModelConfig's design, for random-weight experiments and tests."""
from __future__ import annotations

import dataclasses
from typing import Optional, Tuple


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
        local = min(L, max(1, round(cfg.local_attention_layers * L / cfg.num_layers)))
    kw = dict(
        name=name or f"{cfg.name}-scaled", family=cfg.family, vocab_size=int(vocab_size), hidden_size=H,
        num_layers=L, num_heads=nh, num_kv_heads=nkv, head_dim=head_dim, attention_bias=cfg.attention_bias,
        qk_norm=cfg.qk_norm, attention_sinks=cfg.attention_sinks, local_attention_layers=local,
        local_attention_window=min(cfg.local_attention_window, 16) if local else 0, first_dense_layers=fd,
        moe_every=step, mlp_only_layers=mlp_only,
        dense_intermediate_size=int(dense_intermediate_size) if cfg.dense_intermediate_size else 0,
        dense_glu=cfg.dense_glu, num_experts=E, top_k=k, expert_intermediate_size=I, expert_glu=cfg.expert_glu,
        expert_bias=cfg.expert_bias, num_shared_experts=cfg.num_shared_experts, shared_intermediate_size=shared,
        shared_expert_gate=cfg.shared_expert_gate,
        residual_intermediate_size=max(1, round(cfg.residual_intermediate_size * H / cfg.hidden_size))
        if cfg.residual_intermediate_size else 0,
        router=router, router_bias=cfg.router_bias, selection_bias=cfg.selection_bias,
        tie_embeddings=cfg.tie_embeddings, encoder_layers=enc, mtp_layers=min(cfg.mtp_layers, 1),
        max_context=min(cfg.max_context, 2048), activation=cfg.activation)
    if cfg.is_mla:
        kw.update(q_lora_rank=32 if cfg.q_lora_rank else 0, kv_lora_rank=32, qk_nope_head_dim=16,
                  qk_rope_head_dim=8, v_head_dim=16)
    return type(cfg)(**kw)
