"""The Hugging Face config.json mapping of ModelConfig: one reader and one writer per model_type.

``ModelConfig.from_hf`` loads the dict (``_load_hf``) and calls ``_HF_READERS[model_type]``, which returns the
ModelConfig keyword arguments and the unmodelled fields (kept in ``hf_extra``); ``ModelConfig.to_hf`` calls
``_HF_WRITERS[family]`` and puts the unmodelled fields back (``_merge_extra``). See moepy/configs.py.
"""
from __future__ import annotations

import copy
import json
import os
from typing import Any, Callable, Dict, List, Mapping, Tuple

from .configs import _LLAMA4_VISION_DEFAULTS, ModelConfig
from .routing import RouterConfig


def _plain(obj):
    """A JSON-plain deep copy (dicts, lists, numbers, strings) of a config fragment."""
    return json.loads(json.dumps(obj))


# ---------------------------------------------------------------------------------------------------------
# Hugging Face readers and writers
# ---------------------------------------------------------------------------------------------------------
def _load_hf(config) -> dict:
    if isinstance(config, (str, os.PathLike)):
        path = os.fspath(config)
        if os.path.isdir(path):
            path = os.path.join(path, "config.json")
        with open(path) as f:
            return json.load(f)
    if hasattr(config, "to_dict") and not isinstance(config, Mapping):
        return _plain(config.to_dict())
    if isinstance(config, Mapping):
        return _plain(dict(config))
    raise TypeError(f"config must be a path, a dict or a transformers config, got {type(config).__name__}")


# keys that to_hf regenerates (or that describe another implementation) and are never passed through
_NO_PASSTHROUGH = {"model_type", "architectures", "auto_map", "_name_or_path", "transformers_version", "layer_types",
                   "no_rope_layers", "moe_layers", "mlp_only_layers", "num_experts", "num_local_experts",
                   "num_mtp_layers", "num_nextn_predict_layers", "head_dim", "text_config", "vision_config",
                   "attn_config", "ffn_config", "sub_configs"}


class _Fields:
    """Reads one config dict, remembering which keys were consumed."""

    def __init__(self, d: Mapping[str, Any], where: str):
        self.d, self.where, self.used = d, where, set()

    def req(self, *keys):
        for k in keys:
            self.used.add(k)
        for k in keys:
            if self.d.get(k) is not None:
                return self.d[k]
        alt = f" (or {', '.join(map(repr, keys[1:]))})" if len(keys) > 1 else ""
        raise ValueError(f"{self.where} config.json: missing field {keys[0]!r}{alt}")

    def opt(self, key, default):
        self.used.add(key)
        v = self.d.get(key)
        return default if v is None else v

    def extra(self) -> dict:
        return {k: v for k, v in self.d.items() if k not in self.used and k not in _NO_PASSTHROUGH}


def _common(f: _Fields, *, head_dim_default=True) -> dict:
    H = int(f.req("hidden_size"))
    nh = int(f.req("num_attention_heads"))
    kw = dict(vocab_size=int(f.req("vocab_size")), hidden_size=H, num_layers=int(f.req("num_hidden_layers")),
              num_heads=nh, num_kv_heads=int(f.opt("num_key_value_heads", nh)),
              tie_embeddings=bool(f.opt("tie_word_embeddings", False)),
              max_context=int(f.opt("max_position_embeddings", 0)), activation=str(f.opt("hidden_act", "silu")))
    if head_dim_default:
        f.used.add("head_dim")
        hd = f.d.get("head_dim")
        kw["head_dim"] = int(hd) if hd else None
    return kw


def _dense_width(f: _Fields, key: str, default: int, has_dense: bool) -> int:
    v = f.d.get(key)
    f.used.add(key)
    if v is not None:
        return int(v)
    return default if has_dense else 0


def _read_mixtral(d, mt):
    f = _Fields(d, mt)
    kw = _common(f)
    E = int(f.req("num_local_experts", "num_experts"))
    k = int(f.req("num_experts_per_tok"))
    sw = f.opt("sliding_window", None)
    kw.update(family="mixtral", num_experts=E, top_k=k, expert_intermediate_size=int(f.req("intermediate_size")),
              local_attention_layers=kw["num_layers"] if sw else 0, local_attention_window=int(sw or 0),
              router=RouterConfig.mixtral(E, k))
    return kw, {"": f.extra()}


def _qwen_layers(f: _Fields, L: int):
    step = int(f.opt("decoder_sparse_step", 1))
    mlo = tuple(int(i) for i in f.opt("mlp_only_layers", []))
    has_dense = any(not ((i not in mlo) and (i + 1) % step == 0) for i in range(L))
    return step, mlo, has_dense


def _read_qwen2_moe(d, mt):
    f = _Fields(d, mt)
    kw = _common(f)
    L = kw["num_layers"]
    step, mlo, has_dense = _qwen_layers(f, L)
    E, k, I = int(f.req("num_experts")), int(f.req("num_experts_per_tok")), int(f.req("moe_intermediate_size"))
    S = int(f.req("shared_expert_intermediate_size"))
    if S <= 0:
        raise ValueError(f"{mt} config.json: shared_expert_intermediate_size must be > 0 (transformers always "
                         f"builds the shared expert), got {S}")
    local, window = 0, 0
    if f.opt("use_sliding_window", False):
        mw = int(f.opt("max_window_layers", 28))
        window = int(f.opt("sliding_window", 4096))
        local = sum(1 for i in range(L) if (i + 1) % 2 and i < mw) if window else 0
        window = window if local else 0
    kw.update(family="qwen2_moe", moe_every=step, mlp_only_layers=mlo,
              dense_intermediate_size=_dense_width(f, "intermediate_size", 5632, has_dense), num_experts=E, top_k=k,
              expert_intermediate_size=I, num_shared_experts=S // I if S % I == 0 else 1, shared_intermediate_size=S,
              shared_expert_gate=True, attention_bias="qkv" if f.opt("qkv_bias", True) else "none",
              local_attention_layers=local, local_attention_window=window,
              router=RouterConfig.qwen2_moe(E, k, norm_topk_prob=bool(f.opt("norm_topk_prob", False))))
    return kw, {"": f.extra()}


def _read_qwen3_moe(d, mt):
    f = _Fields(d, mt)
    kw = _common(f)
    L = kw["num_layers"]
    step, mlo, has_dense = _qwen_layers(f, L)
    E, k = int(f.req("num_experts", "num_local_experts")), int(f.req("num_experts_per_tok"))
    f.used.add("num_local_experts")
    sw = int(f.opt("sliding_window", 0) or 0) if f.opt("use_sliding_window", False) else 0
    kw.update(family="qwen3_moe", moe_every=step, mlp_only_layers=mlo,
              dense_intermediate_size=_dense_width(f, "intermediate_size", 6144, has_dense), num_experts=E, top_k=k,
              expert_intermediate_size=int(f.req("moe_intermediate_size")), qk_norm="head",
              attention_bias="all" if f.opt("attention_bias", False) else "none",
              local_attention_layers=L if sw else 0, local_attention_window=sw,
              router=RouterConfig.qwen3_moe(E, k, norm_topk_prob=bool(f.opt("norm_topk_prob", False))))
    return kw, {"": f.extra()}


def _read_olmoe(d, mt):
    f = _Fields(d, mt)
    kw = _common(f)
    E, k = int(f.req("num_experts", "num_local_experts")), int(f.req("num_experts_per_tok"))
    f.used.add("num_local_experts")
    kw.update(family="olmoe", num_experts=E, top_k=k, expert_intermediate_size=int(f.req("intermediate_size")),
              qk_norm="proj", attention_bias="all" if f.opt("attention_bias", False) else "none",
              router=RouterConfig.olmoe(E, k, norm_topk_prob=bool(f.opt("norm_topk_prob", False))))
    return kw, {"": f.extra()}


def _read_dbrx(d, mt):
    f = _Fields(d, mt)
    attn = d.get("attn_config")
    ffn = d.get("ffn_config")
    if not isinstance(ffn, Mapping):
        raise ValueError(f"{mt} config.json: missing field 'ffn_config' (a dict)")
    if not isinstance(attn, Mapping):
        raise ValueError(f"{mt} config.json: missing field 'attn_config' (a dict)")
    fa, ff = _Fields(attn, f"{mt} attn_config"), _Fields(ffn, f"{mt} ffn_config")
    H, nh = int(f.req("d_model")), int(f.req("n_heads"))
    E, k = int(ff.req("moe_num_experts")), int(ff.req("moe_top_k"))
    ff.used.add("moe_normalize_expert_weights")  # null means "do not normalise", absent means 1.0
    p = ffn["moe_normalize_expert_weights"] if "moe_normalize_expert_weights" in ffn else 1.0
    ff.used.add("hidden_size")
    act = ff.opt("ffn_act_fn", {"name": "silu"})
    kw = dict(family="dbrx", vocab_size=int(f.req("vocab_size")), hidden_size=H, num_layers=int(f.req("n_layers")),
              num_heads=nh, num_kv_heads=int(fa.req("kv_n_heads")), num_experts=E, top_k=k,
              expert_intermediate_size=int(ff.req("ffn_hidden_size")),
              tie_embeddings=bool(f.opt("tie_word_embeddings", False)), max_context=int(f.opt("max_seq_len", 0)),
              activation=str(act.get("name", "silu")) if isinstance(act, Mapping) else "silu",
              router=RouterConfig.dbrx(E, k, None if p is None else float(p)))
    return kw, {"": f.extra(), "attn_config": fa.extra(), "ffn_config": ff.extra()}


def _read_deepseek_common(f: _Fields, mt: str, family: str) -> dict:
    kw = _common(f, head_dim_default=False)
    f.used.add("head_dim")
    L = kw["num_layers"]
    fd = int(f.opt("first_k_dense_replace", 3 if family == "deepseek_v3" else 0))
    freq = int(f.opt("moe_layer_freq", 1))
    if freq != 1:
        raise ValueError(f"{mt} config.json: moe_layer_freq={freq} is not supported (transformers ignores it; "
                         f"every released DeepSeek model uses 1)")
    if f.opt("mlp_bias", False):
        raise ValueError(f"{mt} config.json: mlp_bias=True is not supported")
    I = int(f.req("moe_intermediate_size"))
    ns = int(f.opt("n_shared_experts", 1 if family == "deepseek_v3" else 0) or 0)
    kw.update(family=family, first_dense_layers=fd,
              dense_intermediate_size=_dense_width(f, "intermediate_size", 18432 if family == "deepseek_v3" else 11008,
                                                   fd > 0),
              num_experts=int(f.req("n_routed_experts")), top_k=int(f.req("num_experts_per_tok")),
              expert_intermediate_size=I, num_shared_experts=ns, shared_intermediate_size=ns * I,
              attention_bias="all" if f.opt("attention_bias", False) else "none")
    if family != "deepseek":
        kw.update(q_lora_rank=int(f.opt("q_lora_rank", 0) or 0), kv_lora_rank=int(f.req("kv_lora_rank")),
                  qk_nope_head_dim=int(f.req("qk_nope_head_dim")), qk_rope_head_dim=int(f.req("qk_rope_head_dim")),
                  v_head_dim=int(f.req("v_head_dim")))
    return kw


def _read_deepseek(d, mt):
    f = _Fields(d, mt)
    kw = _read_deepseek_common(f, mt, "deepseek")
    if f.opt("scoring_func", "softmax") != "softmax":
        raise ValueError(f"{mt} config.json: scoring_func={d.get('scoring_func')!r} is not supported (DeepSeekMoE: softmax)")
    kw["router"] = RouterConfig(top_k=kw["top_k"], scoring="softmax", normalize=bool(f.opt("norm_topk_prob", False)),
                                num_experts=kw["num_experts"], family="deepseek")
    return kw, {"": f.extra()}


def _read_deepseek_v2(d, mt):
    f = _Fields(d, mt)
    kw = _read_deepseek_common(f, mt, "deepseek_v2")
    method = f.opt("topk_method", "greedy")
    f.used.update({"norm_topk_prob", "scoring_func"})  # transformers' V2 applies neither (softmax, no renorm)
    kw["router"] = RouterConfig.deepseek_v2(kw["num_experts"], kw["top_k"], n_group=int(f.opt("n_group", 1)),
                                            topk_group=int(f.opt("topk_group", 1)),
                                            routed_scaling_factor=float(f.opt("routed_scaling_factor", 1.0)),
                                            topk_method=method)
    return kw, {"": f.extra()}


def _read_deepseek_v3(d, mt):
    f = _Fields(d, mt)
    kw = _read_deepseek_common(f, mt, "deepseek_v3")
    f.used.update({"scoring_func", "topk_method"})
    mtp = d.get("num_nextn_predict_layers", d.get("num_mtp_layers"))
    kw.update(selection_bias=True, mtp_layers=int(mtp or 0),
              router=RouterConfig.deepseek_v3(kw["num_experts"], kw["top_k"], n_group=int(f.opt("n_group", 8)),
                                              topk_group=int(f.opt("topk_group", 4)),
                                              routed_scaling_factor=float(f.opt("routed_scaling_factor", 2.5)),
                                              norm_topk_prob=bool(f.opt("norm_topk_prob", True))))
    return kw, {"": f.extra()}


def _read_llama4(d, mt):
    nested = mt == "llama4" and isinstance(d.get("text_config"), Mapping)
    top = _Fields(d, mt)
    t = d["text_config"] if nested else d
    f = _Fields(t, f"{mt} text_config" if nested else mt)
    kw = _common(f)
    L = kw["num_layers"]
    E, k = int(f.req("num_local_experts")), int(f.opt("num_experts_per_tok", 1))
    step = int(f.opt("interleave_moe_layer_step", 1))
    moe = t.get("moe_layers")
    default_moe = list(range(step - 1, L, step))
    mlo: Tuple[int, ...] = ()
    if moe is not None and list(moe) != default_moe:
        step = 1
        mlo = tuple(i for i in range(L) if i not in set(moe))
    has_dense = len(default_moe if moe is None else moe) < L
    interval = int(f.opt("no_rope_layer_interval", 4))
    rope_layers = t.get("no_rope_layers") or [int((i + 1) % interval != 0) for i in range(L)]
    chunk = f.opt("attention_chunk_size", 8192)
    local = sum(1 for x in rope_layers[:L] if x) if chunk else 0
    kw.update(family="llama4", num_experts=E, top_k=k, expert_intermediate_size=int(f.req("intermediate_size")),
              moe_every=step, mlp_only_layers=mlo,
              dense_intermediate_size=_dense_width(f, "intermediate_size_mlp", 16384, has_dense),
              num_shared_experts=1, shared_intermediate_size=int(f.req("intermediate_size")),
              qk_norm="l2" if f.opt("use_qk_norm", True) else "none",
              attention_bias="all" if f.opt("attention_bias", False) else "none",
              local_attention_layers=local, local_attention_window=int(chunk) if local else 0,
              router=RouterConfig.llama4(E, k))
    extra = {"": top.extra()} if nested else {"": f.extra()}
    if nested:
        extra["text_config"] = f.extra()
        vc = d.get("vision_config")
        if isinstance(vc, Mapping):
            kw["vision_config"] = {k: vc[k] for k in _LLAMA4_VISION_DEFAULTS if vc.get(k) is not None}
            extra["vision_config"] = {k: v for k, v in vc.items() if k not in _LLAMA4_VISION_DEFAULTS}
        if top.d.get("tie_word_embeddings") is not None:
            top.used.add("tie_word_embeddings")
    return kw, extra


def _read_gpt_oss(d, mt):
    f = _Fields(d, mt)
    kw = _common(f, head_dim_default=False)
    f.used.add("head_dim")
    kw["head_dim"] = int(f.opt("head_dim", 64))
    L = kw["num_layers"]
    E, k = int(f.req("num_local_experts", "num_experts")), int(f.opt("num_experts_per_tok", 4))
    sw = f.opt("sliding_window", 128)
    types = d.get("layer_types") or ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(L)]
    local = sum(1 for x in types[:L] if x == "sliding_attention") if sw else 0
    kw.update(family="gpt_oss", num_experts=E, top_k=k, expert_intermediate_size=int(f.req("intermediate_size")),
              attention_bias="all" if f.opt("attention_bias", True) else "none", attention_sinks=True,
              expert_bias=True, router_bias=True, local_attention_layers=local,
              local_attention_window=int(sw) if local else 0, router=RouterConfig.gpt_oss(E, k))
    return kw, {"": f.extra()}


_HF_READERS: Dict[str, Callable] = {
    "mixtral": _read_mixtral, "qwen2_moe": _read_qwen2_moe, "qwen3_moe": _read_qwen3_moe, "olmoe": _read_olmoe,
    "dbrx": _read_dbrx, "deepseek": _read_deepseek, "deepseek_v2": _read_deepseek_v2,
    "deepseek_v3": _read_deepseek_v3, "kimi_k2": _read_deepseek_v3, "llama4": _read_llama4,
    "llama4_text": _read_llama4, "gpt_oss": _read_gpt_oss,
}


def _w_common(c: ModelConfig, model_type: str, arch: str, *, head_dim=True) -> dict:
    d = {"model_type": model_type, "architectures": [arch], "vocab_size": c.vocab_size, "hidden_size": c.hidden_size,
         "num_hidden_layers": c.num_layers, "num_attention_heads": c.num_heads, "num_key_value_heads": c.num_kv_heads,
         "hidden_act": c.activation, "tie_word_embeddings": c.tie_embeddings}
    if head_dim:
        d["head_dim"] = c.head_dim
    if c.max_context:
        d["max_position_embeddings"] = c.max_context
    return d


def _w_mixtral(c: ModelConfig) -> dict:
    d = _w_common(c, "mixtral", "MixtralForCausalLM")
    d.update(intermediate_size=c.expert_intermediate_size, num_local_experts=c.num_experts,
             num_experts_per_tok=c.top_k,
             sliding_window=c.local_attention_window if c.local_attention_layers == c.num_layers else None)
    return d


def _w_qwen_layers(c: ModelConfig, d: dict) -> None:
    d.update(decoder_sparse_step=c.moe_every, mlp_only_layers=list(c.mlp_only_layers),
             norm_topk_prob=c.router.normalize, num_experts=c.num_experts, num_experts_per_tok=c.top_k)
    if c.dense_intermediate_size:
        d["intermediate_size"] = c.dense_intermediate_size


def _w_qwen2_moe(c: ModelConfig) -> dict:
    d = _w_common(c, "qwen2_moe", "Qwen2MoeForCausalLM")
    _w_qwen_layers(c, d)
    d.update(moe_intermediate_size=c.expert_intermediate_size, shared_expert_intermediate_size=c.shared_intermediate_size,
             qkv_bias=c.attention_bias == "qkv", use_sliding_window=c.local_attention_layers > 0)
    if c.local_attention_layers:
        d.update(sliding_window=c.local_attention_window, max_window_layers=2 * c.local_attention_layers)
    return d


def _w_qwen3_moe(c: ModelConfig) -> dict:
    d = _w_common(c, "qwen3_moe", "Qwen3MoeForCausalLM")
    _w_qwen_layers(c, d)
    d.update(moe_intermediate_size=c.expert_intermediate_size, attention_bias=c.attention_bias == "all",
             use_sliding_window=c.local_attention_layers > 0)
    if c.local_attention_layers:
        d["sliding_window"] = c.local_attention_window
    return d


def _w_olmoe(c: ModelConfig) -> dict:
    d = _w_common(c, "olmoe", "OlmoeForCausalLM")
    d.update(intermediate_size=c.expert_intermediate_size, num_experts=c.num_experts, num_experts_per_tok=c.top_k,
             norm_topk_prob=c.router.normalize, attention_bias=c.attention_bias == "all")
    return d


def _w_dbrx(c: ModelConfig) -> dict:
    if c.tie_embeddings:
        raise ValueError(f"ModelConfig({c.name!r}).to_hf(): DBRX does not support tied embeddings (transformers refuses)")
    p = c.router.norm_p if c.router.normalize else None
    d = {"model_type": "dbrx", "architectures": ["DbrxForCausalLM"], "vocab_size": c.vocab_size, "d_model": c.hidden_size,
         "n_heads": c.num_heads, "n_layers": c.num_layers, "tie_word_embeddings": c.tie_embeddings,
         "attn_config": {"kv_n_heads": c.num_kv_heads},
         "ffn_config": {"ffn_hidden_size": c.expert_intermediate_size, "moe_num_experts": c.num_experts,
                        "moe_top_k": c.top_k, "moe_normalize_expert_weights": p, "ffn_act_fn": {"name": c.activation}}}
    if c.max_context:
        d["max_seq_len"] = c.max_context
    return d


def _w_deepseek_common(c: ModelConfig, d: dict) -> None:
    d.update(first_k_dense_replace=c.first_dense_layers, moe_layer_freq=1, n_routed_experts=c.num_experts,
             num_experts_per_tok=c.top_k, n_shared_experts=c.num_shared_experts,
             moe_intermediate_size=c.expert_intermediate_size, attention_bias=c.attention_bias == "all")
    if c.dense_intermediate_size:
        d["intermediate_size"] = c.dense_intermediate_size
    if c.is_mla:
        d.update(q_lora_rank=c.q_lora_rank or None, kv_lora_rank=c.kv_lora_rank, qk_nope_head_dim=c.qk_nope_head_dim,
                 qk_rope_head_dim=c.qk_rope_head_dim, v_head_dim=c.v_head_dim)


def _w_deepseek(c: ModelConfig) -> dict:
    d = _w_common(c, "deepseek", "DeepseekForCausalLM", head_dim=False)
    _w_deepseek_common(c, d)
    d.update(scoring_func="softmax", norm_topk_prob=c.router.normalize)
    return d


def _w_deepseek_v2(c: ModelConfig) -> dict:
    d = _w_common(c, "deepseek_v2", "DeepseekV2ForCausalLM", head_dim=False)
    _w_deepseek_common(c, d)
    r = c.router
    d.update(topk_method="group_limited_greedy" if r.n_group > 1 else "greedy", n_group=r.n_group,
             topk_group=r.topk_group, routed_scaling_factor=float(r.scale), norm_topk_prob=False, scoring_func="softmax")
    return d


def _w_deepseek_v3(c: ModelConfig) -> dict:
    d = _w_common(c, "deepseek_v3", "DeepseekV3ForCausalLM", head_dim=False)
    _w_deepseek_common(c, d)
    r = c.router
    d.update(n_group=r.n_group, topk_group=r.topk_group, routed_scaling_factor=float(r.scale),
             norm_topk_prob=r.normalize, scoring_func="sigmoid", topk_method="noaux_tc",
             num_nextn_predict_layers=c.mtp_layers)
    return d


def _w_llama4(c: ModelConfig) -> dict:
    t = _w_common(c, "llama4_text", "Llama4ForCausalLM")
    L = c.num_layers
    rope = [0] * L
    for i in _spread(L, c.local_attention_layers, period=4):
        rope[i] = 1
    t.update(intermediate_size=c.expert_intermediate_size, num_local_experts=c.num_experts, num_experts_per_tok=c.top_k,
             interleave_moe_layer_step=c.moe_every, moe_layers=list(c.moe_layers), use_qk_norm=c.qk_norm == "l2",
             attention_bias=c.attention_bias == "all", no_rope_layers=rope,
             attention_chunk_size=c.local_attention_window if c.local_attention_layers else None)
    if c.dense_intermediate_size:
        t["intermediate_size_mlp"] = c.dense_intermediate_size
    if c.vision_config is None:
        return t
    t.pop("architectures")
    vision = {"model_type": "llama4_vision_model", **copy.deepcopy(dict(c.vision_config))}
    return {"model_type": "llama4", "architectures": ["Llama4ForConditionalGeneration"], "text_config": t,
            "vision_config": vision, "tie_word_embeddings": c.tie_embeddings}


def _w_gpt_oss(c: ModelConfig) -> dict:
    d = _w_common(c, "gpt_oss", "GptOssForCausalLM")
    L = c.num_layers
    local = set(_spread(L, c.local_attention_layers, period=2))
    d.update(intermediate_size=c.expert_intermediate_size, num_local_experts=c.num_experts, num_experts_per_tok=c.top_k,
             attention_bias=c.attention_bias == "all",
             layer_types=["sliding_attention" if i in local else "full_attention" for i in range(L)],
             sliding_window=c.local_attention_window if c.local_attention_layers else None)
    return d


def _spread(L: int, n: int, period: int) -> List[int]:
    """n layer indices out of L in the families' default order: for period p, first the layers with
    (i + 1) % p != 0 (Llama 4's RoPE/chunked layers for p=4, gpt-oss's banded layers for p=2), then the rest."""
    first = [i for i in range(L) if (i + 1) % period != 0]
    rest = [i for i in range(L) if (i + 1) % period == 0]
    return sorted((first + rest)[:n])


_HF_WRITERS: Dict[str, Callable[[ModelConfig], dict]] = {
    "mixtral": _w_mixtral, "qwen2_moe": _w_qwen2_moe, "qwen3_moe": _w_qwen3_moe, "olmoe": _w_olmoe, "dbrx": _w_dbrx,
    "deepseek": _w_deepseek, "deepseek_v2": _w_deepseek_v2, "deepseek_v3": _w_deepseek_v3, "llama4": _w_llama4,
    "gpt_oss": _w_gpt_oss,
}


def _merge_extra(d: dict, extra: Mapping[str, Any]) -> dict:
    """Put unmodelled fields back under the modelled ones (modelled values win)."""
    if not extra:
        return d
    out = {**extra.get("", {}), **d}
    for sub in ("text_config", "vision_config", "attn_config", "ffn_config"):
        if sub in out and isinstance(out[sub], dict):
            out[sub] = {**extra.get(sub, {}), **out[sub]}
    return _plain(out)
