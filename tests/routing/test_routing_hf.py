"""Each family's RouterConfig against the transformers router of that family, on random logits.

The HF routers compute logits = x W^T; with H = E and W = I the router sees exactly our logits.
"""
import numpy as np
import pytest
import torch
import transformers.models.dbrx.modeling_dbrx as dbrx
import transformers.models.deepseek_v2.modeling_deepseek_v2 as dsv2
import transformers.models.deepseek_v3.modeling_deepseek_v3 as dsv3
import transformers.models.gpt_oss.modeling_gpt_oss as gptoss
import transformers.models.llama4.modeling_llama4 as llama4
import transformers.models.mixtral.modeling_mixtral as mixtral
import transformers.models.olmoe.modeling_olmoe as olmoe
import transformers.models.qwen2_moe.modeling_qwen2_moe as qwen2
import transformers.models.qwen3_moe.modeling_qwen3_moe as qwen3
import transformers.models.switch_transformers.modeling_switch_transformers as switch
from transformers import (DbrxConfig, DeepseekV2Config, DeepseekV3Config, GptOssConfig, Llama4TextConfig,
                          MixtralConfig, OlmoeConfig, Qwen2MoeConfig, Qwen3MoeConfig, SwitchTransformersConfig)

import moepy
from moepy import RouterConfig
from conftest import assert_selection_equal, assert_valid_selection


def identity_router(module, E):
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.eye(E) if p.ndim == 2 else torch.zeros_like(p))
    return module.eval()


def hf_route(family, logits, E, K, **kw):
    """(weights (T,K), experts (T,K)) from the transformers router of `family` fed logits."""
    x = torch.from_numpy(logits)
    if family == "mixtral":
        r = identity_router(mixtral.MixtralTopKRouter(MixtralConfig(hidden_size=E, num_local_experts=E,
                                                                    num_experts_per_tok=K)), E)
        _, w, i = r(x)
    elif family in ("qwen2_moe", "qwen3_moe", "olmoe"):
        cls, mod = {"qwen2_moe": (Qwen2MoeConfig, qwen2.Qwen2MoeTopKRouter),
                    "qwen3_moe": (Qwen3MoeConfig, qwen3.Qwen3MoeTopKRouter),
                    "olmoe": (OlmoeConfig, olmoe.OlmoeTopKRouter)}[family]
        r = identity_router(mod(cls(hidden_size=E, num_experts=E, num_experts_per_tok=K,
                                    norm_topk_prob=kw["norm_topk_prob"])), E)
        _, w, i = r(x)
    elif family == "dbrx":
        cfg = DbrxConfig(d_model=E, ffn_config=dict(moe_num_experts=E, moe_top_k=K,
                                                    moe_normalize_expert_weights=kw["p"]))
        ffn = dbrx.DbrxFFN(cfg)
        w, i = ffn.route_tokens_to_experts(x)
    elif family == "deepseek_v2":
        cfg = DeepseekV2Config(hidden_size=E, n_routed_experts=E, num_experts_per_tok=K, n_group=kw["G"],
                               topk_group=kw["tg"], topk_method=kw["method"], routed_scaling_factor=kw["scale"])
        r = identity_router(dsv2.DeepseekV2TopkRouter(cfg), E)
        _, w, i = r(x)
    elif family == "deepseek_v3":
        cfg = DeepseekV3Config(hidden_size=E, n_routed_experts=E, num_experts_per_tok=K, n_group=kw["G"],
                               topk_group=kw["tg"], routed_scaling_factor=kw["scale"], norm_topk_prob=True)
        r = identity_router(dsv3.DeepseekV3TopkRouter(cfg), E)
        with torch.no_grad():
            r.e_score_correction_bias.copy_(torch.from_numpy(kw["bias"]))
        _, w, i = r(x)
    elif family == "llama4":
        r = identity_router(llama4.Llama4Router(Llama4TextConfig(hidden_size=E, num_local_experts=E,
                                                                 num_experts_per_tok=K)), E)
        scores, _ = r(x)
        i = torch.topk(x, K, dim=-1).indices
        w = scores.gather(1, i)
    elif family == "gpt_oss":
        r = identity_router(gptoss.GptOssTopKRouter(GptOssConfig(hidden_size=E, num_local_experts=E,
                                                                 num_experts_per_tok=K)), E)
        _, w, i = r(x)
    elif family == "switch":
        cfg = SwitchTransformersConfig(d_model=E, num_experts=E, expert_capacity=kw["capacity"])
        r = identity_router(switch.SwitchTransformersTop1Router(cfg), E)
        onehot, probs, _ = r(x[None])
        kept = onehot[0].sum(-1).bool()
        i = torch.argmax(x, -1, keepdim=True)
        w = probs[0] * kept[:, None]
    return w.detach().float().numpy(), i.numpy().astype(np.int64)


def sort_by_expert(w, e):
    order = np.argsort(e, axis=1, kind="stable")
    return np.take_along_axis(w, order, 1), np.take_along_axis(e, order, 1)


CASES = [  # (family, E, K, RouterConfig, hf kwargs)
    ("mixtral", 8, 2, RouterConfig.mixtral(8, 2), {}),
    ("mixtral", 64, 6, RouterConfig.mixtral(64, 6), {}),
    ("qwen2_moe", 60, 4, RouterConfig.qwen2_moe(60, 4), {"norm_topk_prob": False}),
    ("qwen2_moe", 64, 8, RouterConfig.qwen2_moe(64, 8, norm_topk_prob=True), {"norm_topk_prob": True}),
    ("qwen3_moe", 128, 8, RouterConfig.qwen3_moe(128, 8), {"norm_topk_prob": True}),
    ("olmoe", 64, 8, RouterConfig.olmoe(64, 8), {"norm_topk_prob": False}),
    ("dbrx", 16, 4, RouterConfig.dbrx(16, 4), {"p": 1.0}),
    ("dbrx", 16, 4, RouterConfig.dbrx(16, 4, moe_normalize_expert_weights=2.0), {"p": 2.0}),
    ("deepseek_v2", 64, 6, RouterConfig.deepseek_v2(64, 6, topk_method="greedy", routed_scaling_factor=1.0),
     {"G": 1, "tg": 1, "method": "greedy", "scale": 1.0}),
    ("deepseek_v2", 160, 6, RouterConfig.deepseek_v2(160, 6, n_group=8, topk_group=3),
     {"G": 8, "tg": 3, "method": "group_limited_greedy", "scale": 16.0}),
    ("deepseek_v3", 256, 8, RouterConfig.deepseek_v3(256, 8), {"G": 8, "tg": 4, "scale": 2.5}),
    ("deepseek_v3", 64, 6, RouterConfig.deepseek_v3(64, 6, n_group=4, topk_group=2, routed_scaling_factor=1.0),
     {"G": 4, "tg": 2, "scale": 1.0}),
    ("deepseek_v3", 384, 8, RouterConfig.kimi_k2(), {"G": 1, "tg": 1, "scale": 2.827}),
    ("llama4", 16, 1, RouterConfig.llama4(16, 1), {}),
    ("llama4", 128, 2, RouterConfig.llama4(128, 2), {}),
    ("gpt_oss", 32, 4, RouterConfig.gpt_oss(32, 4), {}),
    ("gpt_oss", 128, 4, RouterConfig.gpt_oss(128, 4), {}),
    ("switch", 8, 1, RouterConfig.switch(8, expert_capacity=40), {"capacity": 40}),
]


@pytest.mark.parametrize("family,E,K,cfg,kw", CASES, ids=[f"{c[0]}-E{c[1]}-k{c[2]}" for c in CASES])
@pytest.mark.parametrize("T", [1, 5, 300])
def test_router_matches_transformers(family, E, K, cfg, kw, T):
    rng = np.random.default_rng(T * 1000 + E)
    logits = (rng.standard_normal((T, E)) * 1.5).astype(np.float32)
    bias = None
    if family == "deepseek_v3":
        bias = (rng.standard_normal(E) * 0.1).astype(np.float32)
        kw = dict(kw, bias=bias)
    r = moepy.route(logits, cfg, bias=bias)
    hw, he = hf_route(family, logits, E, K, **kw)
    assert_valid_selection(r.experts, E)
    mw, me = sort_by_expert(r.weights, r.experts.astype(np.int64))
    hw, he = sort_by_expert(hw, he)
    sel = logits if cfg.topk_before_score else r.scores
    sel = sel + (bias if bias is not None else 0)
    assert_selection_equal(me, he, sel, rtol=1e-5)
    same = (me == he).all(1)
    assert same.mean() > 0.99
    np.testing.assert_allclose(mw[same], hw[same], rtol=2e-6, atol=1e-7 * cfg.scale)


def test_switch_capacity_matches_transformers():
    rng = np.random.default_rng(5)
    E, T = 4, 64
    logits = rng.standard_normal((T, E)).astype(np.float32)
    logits[:, 1] += 1.0  # overload expert 1
    for cap in (1, 8, 16, 64):
        r = moepy.route(logits, RouterConfig.switch(E, expert_capacity=cap))
        hw, he = hf_route("switch", logits, E, 1, capacity=cap)
        np.testing.assert_array_equal(r.experts[:, 0], he[:, 0])
        np.testing.assert_allclose(r.weights, hw, rtol=1e-6)
        np.testing.assert_array_equal(r.dropped[:, 0], hw[:, 0] == 0)


def test_losses_match_transformers():
    rng = np.random.default_rng(0)
    T, E, K = 257, 16, 2
    logits = rng.standard_normal((T, E)).astype(np.float32)
    r = moepy.route(logits, RouterConfig.mixtral(E, K))
    hf = mixtral.load_balancing_loss_func((torch.from_numpy(logits),), E, K)
    assert moepy.load_balancing_loss(r) == pytest.approx(float(hf), rel=1e-5)
    z = switch.router_z_loss_func(torch.from_numpy(logits)[None])
    assert moepy.router_z_loss(logits) == pytest.approx(float(z), rel=1e-5)
    r1 = moepy.route(logits, RouterConfig.switch(E, expert_capacity=T))
    one_hot_idx = torch.from_numpy(r1.experts[:, 0].astype(np.int64))[None]
    aux = switch.load_balancing_loss_func(torch.softmax(torch.from_numpy(logits), -1)[None], one_hot_idx)
    assert moepy.load_balancing_loss(r1) == pytest.approx(float(aux), rel=1e-5)
