"""Sanity tests of tests/hf_blocks.py: the builders run, the exposed tensors (checkpoint naming) reproduce the
torch block through an independent NumPy implementation, and the legacy names load back into transformers
(through its own conversion_mapping) to exactly the fused tensors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

import hf_blocks as hb

H = 32


# ============================================================================ NumPy reference (float64)
def _silu(x):
    return x / (1.0 + np.exp(-x))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _softmax(x):
    z = x - x.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _topk(scores, k):
    """indices of the k largest entries per row (order irrelevant)."""
    return np.argsort(-scores, axis=-1, kind="stable")[:, :k]


def _swiglu(x, wg, wu, wd):
    """nn.Linear orientation: wg/wu (I, H), wd (H, I)."""
    return (_silu(x @ wg.T) * (x @ wu.T)) @ wd.T


def _combine(x, idx, w, expert_fn):
    out = np.zeros_like(x)
    for t in range(x.shape[0]):
        for j in range(idx.shape[1]):
            out[t] += w[t, j] * expert_fn(int(idx[t, j]), x[t : t + 1])[0]
    return out


def ref_moe(family: str, cfg: dict, T: dict, layer: int, x: np.ndarray, **kw):
    """Returns (out, logits, idx, weights, kept) computed from the config.json dict and the legacy
    checkpoint tensors only.  x: (N, H) float64; for switch also takes rows=(B, S)."""
    g = lambda name: T[name].astype(np.float64)  # noqa: E731
    N = x.shape[0]
    kept = np.ones(N, dtype=bool)
    if family in ("mixtral", "qwen2_moe", "qwen3_moe", "olmoe"):
        p = f"model.layers.{layer}.block_sparse_moe." if family == "mixtral" else f"model.layers.{layer}.mlp."
        names = ("w1", "w3", "w2") if family == "mixtral" else ("gate_proj", "up_proj", "down_proj")
        k = cfg["num_experts_per_tok"]
        logits = x @ g(p + "gate.weight").T
        probs = _softmax(logits)
        idx = _topk(probs, k)
        w = np.take_along_axis(probs, idx, 1)
        if family == "mixtral" or cfg.get("norm_topk_prob", False):
            w = w / w.sum(-1, keepdims=True)
        ex = lambda e, h: _swiglu(h, *(g(f"{p}experts.{e}.{n}.weight") for n in names))  # noqa: E731
        out = _combine(x, idx, w, ex)
        if family == "qwen2_moe":
            shared = _swiglu(x, *(g(f"{p}shared_expert.{n}.weight") for n in ("gate_proj", "up_proj", "down_proj")))
            out = out + _sigmoid(x @ g(p + "shared_expert_gate.weight").T) * shared
    elif family in ("deepseek_v2", "deepseek_v3"):
        p = f"model.layers.{layer}.mlp."
        k, E = cfg["num_experts_per_tok"], cfg["n_routed_experts"]
        ng, tg = cfg["n_group"], cfg["topk_group"]
        logits = x @ g(p + "gate.weight").T
        if family == "deepseek_v2":
            s = _softmax(logits)
            if cfg["topk_method"] == "group_limited_greedy":
                gs = s.reshape(N, ng, E // ng).max(-1)
                keep = np.zeros((N, ng), bool)
                np.put_along_axis(keep, _topk(gs, tg), True, 1)
                s = np.where(np.repeat(keep, E // ng, 1), s, 0.0)
            else:
                assert cfg["topk_method"] == "greedy"
            idx = _topk(s, k)
            w = np.take_along_axis(s, idx, 1)
        else:
            s = _sigmoid(logits)
            choice = s + g(p + "gate.e_score_correction_bias")[None]
            gs = np.sort(choice.reshape(N, ng, E // ng), -1)[..., -2:].sum(-1)
            keep = np.zeros((N, ng), bool)
            np.put_along_axis(keep, _topk(gs, tg), True, 1)
            choice = np.where(np.repeat(keep, E // ng, 1), choice, -np.inf)
            idx = _topk(choice, k)
            w = np.take_along_axis(s, idx, 1)
            if cfg["norm_topk_prob"]:
                w = w / (w.sum(-1, keepdims=True) + 1e-20)
        w = w * cfg["routed_scaling_factor"]
        names = ("gate_proj", "up_proj", "down_proj")
        out = _combine(x, idx, w, lambda e, h: _swiglu(h, *(g(f"{p}experts.{e}.{n}.weight") for n in names)))
        out = out + _swiglu(x, *(g(f"{p}shared_experts.{n}.weight") for n in names))
    elif family == "dbrx":
        p = f"transformer.blocks.{layer}.ffn."
        fc = cfg["ffn_config"]
        F, k = fc["ffn_hidden_size"], fc["moe_top_k"]
        logits = x @ g(p + "router.layer.weight").T
        probs = _softmax(logits)
        idx = _topk(probs, k)
        w = np.take_along_axis(probs, idx, 1)
        pn = fc.get("moe_normalize_expert_weights", 1.0)
        if pn is not None:
            w = w / (np.abs(w) ** pn).sum(-1, keepdims=True) ** (1.0 / pn)
        w1, v1, w2 = (g(p + f"experts.mlp.{n}") for n in ("w1", "v1", "w2"))

        def ex(e, h):
            sl = slice(e * F, (e + 1) * F)
            return (_silu(h @ w1[sl].T) * (h @ v1[sl].T)) @ w2[sl]  # w2 rows are (F, H): NOT transposed

        out = _combine(x, idx, w, ex)
    elif family == "llama4":
        tc = cfg.get("text_config", cfg)
        root = "language_model." if "text_config" in cfg else ""
        p = f"{root}model.layers.{layer}.feed_forward."
        k, I = tc["num_experts_per_tok"], tc["intermediate_size"]
        logits = x @ g(p + "router.weight").T
        idx = _topk(logits, k)
        w = _sigmoid(np.take_along_axis(logits, idx, 1))  # sigmoid of the raw selected logits, no renorm
        gu, dn = g(p + "experts.gate_up_proj"), g(p + "experts.down_proj")  # (E,H,2I), (E,I,H)
        out = np.zeros_like(x)
        for t in range(N):
            for j in range(k):
                e = idx[t, j]
                h = x[t] * w[t, j]  # the score scales the expert INPUT
                a = h @ gu[e]
                out[t] += (_silu(a[:I]) * a[I:]) @ dn[e]
        sh = (g(p + f"shared_expert.{n}.weight") for n in ("gate_proj", "up_proj", "down_proj"))
        out = out + _swiglu(x, *sh)
    elif family == "gpt_oss":
        p = f"model.layers.{layer}.mlp."
        k = cfg["num_experts_per_tok"]
        lim, alpha = cfg["swiglu_limit"], cfg.get("swiglu_alpha", 1.702)
        logits = x @ g(p + "router.weight").T + g(p + "router.bias")
        idx = _topk(logits, k)
        w = _softmax(np.take_along_axis(logits, idx, 1))  # softmax over the k selected logits
        gu, gub = g(p + "experts.gate_up_proj"), g(p + "experts.gate_up_proj_bias")
        dn, dnb = g(p + "experts.down_proj"), g(p + "experts.down_proj_bias")
        clamped = [0]

        def ex(e, h):
            a = h @ gu[e] + gub[e]
            gate, up = a[..., 0::2], a[..., 1::2]  # interleaved
            clamped[0] += int((gate > lim).sum() + (np.abs(up) > lim).sum())
            gate = np.minimum(gate, lim)
            up = np.clip(up, -lim, lim)
            return ((up + 1.0) * (gate * _sigmoid(alpha * gate))) @ dn[e] + dnb[e]

        out = _combine(x, idx, w, ex)
        kw.setdefault("stats", {})["clamped"] = clamped[0]
    elif family == "jamba":
        p = f"model.layers.{layer}.feed_forward."
        k = cfg["num_experts_per_tok"]
        logits = x @ g(p + "router.weight").T
        probs = _softmax(logits)
        idx = _topk(probs, k)
        w = np.take_along_axis(probs, idx, 1)  # NOT renormalised
        names = ("gate_proj", "up_proj", "down_proj")
        out = _combine(x, idx, w, lambda e, h: _swiglu(h, *(g(f"{p}experts.{e}.{n}.weight") for n in names)))
    elif family == "nemotron_h":
        p = f"backbone.layers.{layer}.mixer."
        k, E = cfg["num_experts_per_tok"], cfg["n_routed_experts"]
        ng, tg = cfg["n_group"], cfg["topk_group"]
        logits = x @ g(p + "gate.weight").T
        s = _sigmoid(logits)
        choice = s + g(p + "gate.e_score_correction_bias")[None]
        gs = np.sort(choice.reshape(N, ng, E // ng), -1)[..., -2:].sum(-1)
        keep = np.zeros((N, ng), bool)
        np.put_along_axis(keep, _topk(gs, tg), True, 1)
        choice = np.where(np.repeat(keep, E // ng, 1), choice, -np.inf)
        idx = _topk(choice, k)
        w = np.take_along_axis(s, idx, 1)
        if cfg["norm_topk_prob"]:
            w = w / (w.sum(-1, keepdims=True) + 1e-20)
        w = w * cfg["routed_scaling_factor"]
        relu2 = lambda v: np.maximum(v, 0.0) ** 2  # noqa: E731
        ungated = lambda h, up, down: relu2(h @ up.T) @ down.T  # noqa: E731
        z = x
        if cfg.get("moe_latent_size"):
            z = x @ g(p + "fc1_latent_proj.weight").T
        routed = _combine(z, idx, w, lambda e, h: ungated(h, g(f"{p}experts.{e}.up_proj.weight"),
                                                              g(f"{p}experts.{e}.down_proj.weight")))
        if cfg.get("moe_latent_size"):
            routed = routed @ g(p + "fc2_latent_proj.weight").T
        out = routed + ungated(x, g(p + "shared_experts.up_proj.weight"), g(p + "shared_experts.down_proj.weight"))
    elif family == "switch":
        stack = kw.get("stack", "encoder")
        p = f"{stack}.block.{layer}.layer.{2 if stack == 'decoder' else 1}.mlp."
        cap = cfg["expert_capacity"]
        logits = x @ g(p + "router.classifier.weight").T
        probs = _softmax(logits)
        idx = probs.argmax(-1)[:, None]
        w = probs.max(-1, keepdims=True)
        B, S = kw.get("rows", (1, N))
        for b in range(B):  # capacity counted per batch row, in token position order
            count = np.zeros(cfg["num_experts"], int)
            for s_ in range(S):
                t = b * S + s_
                count[idx[t, 0]] += 1
                kept[t] = count[idx[t, 0]] <= cap
        out = np.zeros_like(x)
        for t in range(N):
            if kept[t]:
                e = idx[t, 0]
                hdn = np.maximum(x[t] @ g(f"{p}experts.expert_{e}.wi.weight").T, 0.0)
                out[t] = w[t, 0] * (hdn @ g(f"{p}experts.expert_{e}.wo.weight").T)
    else:
        raise AssertionError(family)
    order = np.argsort(idx, axis=1)
    return out, logits, np.take_along_axis(idx, order, 1), np.take_along_axis(w, order, 1), kept


# ============================================================================ cases
CASES = [
    ("mixtral", {}),
    ("mixtral", {"layer_index": 3, "top_k": 3}),
    ("mixtral", {"experts_implementation": "grouped_mm"}),
    ("qwen2_moe", {}),
    ("qwen2_moe", {"norm_topk_prob": True, "shared_intermediate": 40}),
    ("qwen3_moe", {}),
    ("qwen3_moe", {"norm_topk_prob": False, "decoder_sparse_step": 2}),
    ("olmoe", {}),
    ("olmoe", {"norm_topk_prob": True}),
    ("dbrx", {}),
    ("dbrx", {"moe_normalize_expert_weights": None, "top_k": 3}),
    ("dbrx", {"moe_normalize_expert_weights": 2.0}),
    ("deepseek_v2", {}),
    ("deepseek_v2", {"topk_method": "greedy", "routed_scaling_factor": 1.0, "n_shared_experts": 1}),
    ("deepseek_v2", {"n_group": 4, "topk_group": 2, "top_k": 3}),
    ("deepseek_v3", {}),
    ("deepseek_v3", {"norm_topk_prob": False, "routed_scaling_factor": 1}),
    ("deepseek_v3", {"n_group": 1, "topk_group": 1, "experts": 16, "top_k": 4}),
    ("deepseek_v3", {"experts_implementation": "batched_mm"}),
    ("llama4", {}),
    ("llama4", {"top_k": 1, "llama4_text_only": True}),
    ("llama4", {"top_k": 1, "interleave_moe_layer_step": 2, "num_hidden_layers": 4}),
    ("gpt_oss", {}),
    ("gpt_oss", {"swiglu_limit": 0.3, "top_k": 4}),
    ("gpt_oss", {"swiglu_limit": 0.3, "experts_implementation": "grouped_mm"}),
    ("switch", {}),
    ("switch", {"expert_capacity": 3}),
    ("switch", {"expert_capacity": 2, "switch_stack": "decoder"}),
    ("jamba", {}),
    ("jamba", {"layer_index": 2, "num_hidden_layers": 4, "top_k": 3}),
    ("jamba", {"experts_implementation": "grouped_mm"}),
    ("nemotron_h", {}),
    ("nemotron_h", {"n_group": 4, "topk_group": 2, "experts": 16, "top_k": 4}),
    ("nemotron_h", {"norm_topk_prob": False, "routed_scaling_factor": 1.0, "layer_index": 3, "num_hidden_layers": 5}),
    ("nemotron_h", {"latent": 16}),
    ("nemotron_h", {"experts_implementation": "batched_mm"}),
]


def _case_id(c):
    fam, kw = c
    return fam + ("-" + "-".join(f"{k}={v}" for k, v in kw.items()) if kw else "")


def _build(fam, kw):
    kw = dict(kw)
    return hb.make_block(fam, seed=len(kw) + 3, **kw)


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_numpy_reference_matches_torch(case):
    fam, kw = case
    blk = _build(fam, kw)
    rows = (3, 16) if fam == "switch" else None
    x = hb.make_input(48, blk.hidden, seed=7)
    xin = x.reshape(*rows, blk.hidden) if rows else x
    y = blk.forward(xin).reshape(-1, blk.hidden)
    w, idx = blk.route(x)
    logits = blk.router_logits(x)
    kept = blk.kept(xin)

    stats: dict = {}
    extra = {"rows": rows or (1, 48), "stack": kw.get("switch_stack", "encoder"), "stats": stats}
    ref, rlog, ridx, rw, rkept = ref_moe(fam, blk.hf_config, blk.tensors_legacy, blk.layer_index,
                                         x.astype(np.float64), **extra)

    assert y.dtype == np.float32 and w.dtype == np.float32 and logits.dtype == np.float32
    assert idx.dtype == np.int64 and idx.shape == (48, blk.top_k) and logits.shape == (48, blk.num_experts)
    np.testing.assert_allclose(logits, rlog, rtol=1e-5, atol=1e-5 * np.abs(rlog).max())
    np.testing.assert_array_equal(idx, ridx)
    assert np.all(np.diff(idx, axis=1) > 0), "route() rows must be sorted by ascending expert id"
    np.testing.assert_allclose(w, rw, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(kept, rkept)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    assert np.abs(ref).max() > 1e-2  # non-trivial output

    if fam == "switch" and kw.get("expert_capacity", 64) < 16:
        assert not kept.all() and kept.any()
        assert np.all(y[~kept] == 0.0)
    if fam == "gpt_oss" and kw.get("swiglu_limit", 7.0) < 1:
        assert stats["clamped"] > 0  # the clamp branch was exercised


@pytest.mark.parametrize("fam", hb.FAMILIES)
def test_builder_shapes_names_and_config(fam):
    blk = hb.make_block(fam)
    json.dumps(blk.hf_config)  # JSON-able
    assert blk.layer_index == 1
    L = blk.layer_index
    for d in (blk.tensors_legacy, blk.tensors_fused):
        assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in d.values())
    # fused == the block's own state_dict under the layer prefix
    sd = blk.module.state_dict()
    assert set(blk.tensors_fused) == {blk.prefix_fused + k for k in sd}
    E, F = 8, 24
    expected = {
        "mixtral": {f"model.layers.{L}.block_sparse_moe.gate.weight": (E, H),
                    f"model.layers.{L}.block_sparse_moe.experts.7.w1.weight": (F, H),
                    f"model.layers.{L}.block_sparse_moe.experts.0.w3.weight": (F, H),
                    f"model.layers.{L}.block_sparse_moe.experts.3.w2.weight": (H, F)},
        "qwen2_moe": {f"model.layers.{L}.mlp.gate.weight": (E, H),
                      f"model.layers.{L}.mlp.experts.5.up_proj.weight": (F, H),
                      f"model.layers.{L}.mlp.shared_expert.down_proj.weight": (H, 2 * F),
                      f"model.layers.{L}.mlp.shared_expert_gate.weight": (1, H)},
        "qwen3_moe": {f"model.layers.{L}.mlp.experts.7.down_proj.weight": (H, F)},
        "olmoe": {f"model.layers.{L}.mlp.experts.0.gate_proj.weight": (F, H)},
        "dbrx": {f"transformer.blocks.{L}.ffn.router.layer.weight": (E, H),
                 f"transformer.blocks.{L}.ffn.experts.mlp.w1": (E * F, H),
                 f"transformer.blocks.{L}.ffn.experts.mlp.v1": (E * F, H),
                 f"transformer.blocks.{L}.ffn.experts.mlp.w2": (E * F, H)},
        "deepseek_v2": {f"model.layers.{L}.mlp.shared_experts.gate_proj.weight": (2 * F, H)},
        "deepseek_v3": {f"model.layers.{L}.mlp.gate.e_score_correction_bias": (E,),
                        f"model.layers.{L}.mlp.shared_experts.up_proj.weight": (F, H)},
        "llama4": {f"language_model.model.layers.{L}.feed_forward.router.weight": (E, H),
                   f"language_model.model.layers.{L}.feed_forward.experts.gate_up_proj": (E, H, 2 * F),
                   f"language_model.model.layers.{L}.feed_forward.experts.down_proj": (E, F, H),
                   f"language_model.model.layers.{L}.feed_forward.shared_expert.gate_proj.weight": (F, H)},
        "gpt_oss": {f"model.layers.{L}.mlp.router.weight": (E, H), f"model.layers.{L}.mlp.router.bias": (E,),
                    f"model.layers.{L}.mlp.experts.gate_up_proj": (E, H, 2 * F),
                    f"model.layers.{L}.mlp.experts.gate_up_proj_bias": (E, 2 * F),
                    f"model.layers.{L}.mlp.experts.down_proj": (E, F, H),
                    f"model.layers.{L}.mlp.experts.down_proj_bias": (E, H)},
        "switch": {f"encoder.block.{L}.layer.1.mlp.router.classifier.weight": (E, H),
                   f"encoder.block.{L}.layer.1.mlp.experts.expert_7.wi.weight": (F, H),
                   f"encoder.block.{L}.layer.1.mlp.experts.expert_7.wo.weight": (H, F)},
        "jamba": {f"model.layers.{L}.feed_forward.router.weight": (E, H),
                  f"model.layers.{L}.feed_forward.experts.7.gate_proj.weight": (F, H),
                  f"model.layers.{L}.feed_forward.experts.0.up_proj.weight": (F, H),
                  f"model.layers.{L}.feed_forward.experts.3.down_proj.weight": (H, F)},
        "nemotron_h": {f"backbone.layers.{L}.mixer.gate.weight": (E, H),
                       f"backbone.layers.{L}.mixer.gate.e_score_correction_bias": (E,),
                       f"backbone.layers.{L}.mixer.experts.7.up_proj.weight": (F, H),
                       f"backbone.layers.{L}.mixer.experts.0.down_proj.weight": (H, F),
                       f"backbone.layers.{L}.mixer.shared_experts.up_proj.weight": (2 * F, H),
                       f"backbone.layers.{L}.mixer.shared_experts.down_proj.weight": (H, 2 * F)},
    }[fam]
    for k, shp in expected.items():
        assert blk.tensors_legacy[k].shape == shp, k
    if fam in ("mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v2", "deepseek_v3", "jamba"):
        pf = blk.prefix_fused
        assert blk.tensors_fused[pf + "experts.gate_up_proj"].shape == (E, 2 * F, H)
        assert blk.tensors_fused[pf + "experts.down_proj"].shape == (E, H, F)
        assert not any(".experts.0." in k for k in blk.tensors_fused)
    elif fam == "nemotron_h":  # ungated experts, and the Hub's "backbone." is transformers v5's "model."
        pf = blk.prefix_fused
        assert pf == f"model.layers.{L}.mixer." and blk.prefix_legacy == f"backbone.layers.{L}.mixer."
        assert blk.tensors_fused[pf + "experts.up_proj"].shape == (E, F, H)
        assert blk.tensors_fused[pf + "experts.down_proj"].shape == (E, H, F)
        assert not any(".experts.0." in k for k in blk.tensors_fused)
    else:
        assert blk.tensors_legacy.keys() == blk.tensors_fused.keys()
    # every parameter/buffer explicitly initialised (nothing left at zero / empty garbage)
    for k, v in blk.tensors_fused.items():
        assert np.isfinite(v).all() and 0.01 < v.std() < 1.0, k


@pytest.mark.parametrize("fam,kw", [(f, {}) for f in hb.FAMILIES]
                         + [("llama4", {"llama4_text_only": True}), ("switch", {"switch_stack": "decoder"}),
                            ("deepseek_v2", {"layer_index": 2, "topk_method": "greedy"}),
                            ("nemotron_h", {"latent": 16, "layer_index": 3, "num_hidden_layers": 4})])
def test_legacy_checkpoint_loads_into_transformers(tmp_path, fam, kw):
    """config.json + model.safetensors in Hub naming -> transformers.from_pretrained (which applies
    conversion_mapping.py) gives exactly tensors_fused, and the loaded layer computes the same output
    (bit-exactly with experts_implementation="eager"; from_pretrained's default is "grouped_mm", which sums the
    top-k contributions in rank order instead of ascending expert order, so only ~1e-7 close)."""
    import transformers
    from safetensors.numpy import save_file

    blk = hb.make_block(fam, seed=11, **kw)
    (tmp_path / "config.json").write_text(json.dumps(blk.hf_config))
    save_file(blk.tensors_legacy, os.fspath(tmp_path / "model.safetensors"))
    cls = getattr(transformers, blk.hf_config["architectures"][0])
    model, info = cls.from_pretrained(tmp_path, dtype=torch.float32, experts_implementation="eager",
                                      output_loading_info=True)
    model.eval()
    assert not info["unexpected_keys"], info["unexpected_keys"]  # every Hub-named tensor was consumed
    assert not [k for k in info["missing_keys"] if k in blk.tensors_fused]
    sd = model.state_dict()
    for k, v in blk.tensors_fused.items():
        assert k in sd, k
        np.testing.assert_array_equal(sd[k].numpy(), v, err_msg=k)
    sub = model.get_submodule(blk.prefix_fused.rstrip("."))
    assert type(sub) is type(blk.module)
    x = hb.make_input(20, blk.hidden, seed=2)
    with torch.no_grad():
        out = sub(torch.from_numpy(x)[None])
    out = (out[0] if isinstance(out, tuple) else out).reshape(20, -1).numpy()
    np.testing.assert_allclose(out, blk.forward(x), rtol=1e-6, atol=1e-7)


def test_reproducible_and_seed_sensitive():
    a, b, c = hb.make_block("deepseek_v3", seed=5), hb.make_block("deepseek_v3", seed=5), hb.make_block("deepseek_v3", seed=6)
    assert a.tensors_legacy.keys() == c.tensors_legacy.keys()
    for k in a.tensors_legacy:
        np.testing.assert_array_equal(a.tensors_legacy[k], b.tensors_legacy[k])
        assert not np.array_equal(a.tensors_legacy[k], c.tensors_legacy[k])
    x = hb.make_input(8, H)
    np.testing.assert_array_equal(a.forward(x), b.forward(x))
    torch.manual_seed(123)  # global RNG state does not matter
    np.testing.assert_array_equal(a.forward(x), hb.make_block("deepseek_v3", seed=5).forward(x))


def test_e_score_correction_bias_changes_selection():
    blk = hb.make_block("deepseek_v3", experts=16, top_k=4)
    bias = blk.tensors_legacy["model.layers.1.mlp.gate.e_score_correction_bias"]
    assert np.abs(bias).min() > 0
    x = hb.make_input(64, H, seed=1)
    _, idx = blk.route(x)
    s = 1 / (1 + np.exp(-blk.router_logits(x).astype(np.float64)))
    unbiased = np.sort(_topk(s, 4), 1)
    assert (idx != unbiased).any(axis=1).sum() > 0


@pytest.mark.parametrize("fam", ["deepseek_v2", "deepseek_v3"])
def test_group_limit_is_exercised_by_default(fam):
    x = hb.make_input(64, H, seed=3)
    grouped = hb.make_block(fam).route(x)[1]
    ungrouped = hb.make_block(fam, n_group=1, topk_group=1).route(x)[1]
    assert (grouped != ungrouped).any(axis=1).sum() > 0


def test_bad_overrides_rejected():
    with pytest.raises(ValueError, match="unknown override"):
        hb.make_block("mixtral", norm_topk_prob=True)  # Mixtral always renormalises: no such field
    with pytest.raises(ValueError, match="not an MoE layer"):
        hb.make_block("qwen2_moe", mlp_only_layers=[1])
    with pytest.raises(ValueError, match="not an MoE layer"):
        hb.make_block("llama4", interleave_moe_layer_step=2, layer_index=0)
    with pytest.raises(ValueError):
        hb.make_block("nope")
