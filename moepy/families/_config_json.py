"""Reading and writing Hugging Face config.json: the pieces every family's reader and writer share.

`load_hf_config` is the one loader of a config.json (a path to the file or its directory, a dict, or a
transformers config object). `Fields` reads one dict and remembers what it consumed, so the fields a family
does not model pass through `hf_extra` back into `to_hf()` (`merge_extra`).
"""
from __future__ import annotations

import json
import os
from typing import Any, List, Mapping

from .._json import unique_keys
from .._limits import MAX_SIZE

def plain_json(obj):
    """A JSON-plain deep copy (dicts, lists, numbers, strings) of a config fragment."""
    return json.loads(json.dumps(obj))


def load_hf_config(config) -> dict:
    """A config.json as a JSON-plain dict, from a path (the file or its directory), a dict or a transformers
    config. TypeError for anything else; ValueError if the file does not hold a JSON object."""
    if isinstance(config, (str, os.PathLike)):
        path = os.fspath(config)
        if os.path.isdir(path):
            path = os.path.join(path, "config.json")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no config.json at {path!r}")
        with open(path, encoding="utf-8") as f:
            try:
                d = json.load(f, object_pairs_hook=_no_duplicate_keys(path))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: not valid JSON ({exc})") from None
            except RecursionError:
                raise ValueError(f"{path}: JSON nested too deeply") from None
        if not isinstance(d, dict):
            raise ValueError(f"{path}: config.json must hold a JSON object, got {type(d).__name__}")
        return d
    if hasattr(config, "to_dict") and not isinstance(config, Mapping):
        return plain_json(config.to_dict())
    if isinstance(config, Mapping):
        return plain_json(dict(config))
    raise TypeError(f"config must be a path, a dict or a transformers config, got {type(config).__name__}")


def _no_duplicate_keys(path):
    return unique_keys(lambda k: ValueError(f"{path}: duplicate key {k!r} in config.json"))


def text_config(d: Mapping) -> dict:
    """The part of a config.json that describes the decoder layers (Llama 4 nests it in text_config)."""
    if d.get("model_type") == "llama4":
        text = d.get("text_config")
        if not isinstance(text, Mapping):
            raise ValueError("llama4 config.json has no text_config")
        return dict(text)
    return dict(d)


NO_PASSTHROUGH = {"model_type", "architectures", "auto_map", "_name_or_path", "transformers_version", "layer_types",
                   "no_rope_layers", "moe_layers", "mlp_only_layers", "num_experts", "num_local_experts",
                   "num_mtp_layers", "num_nextn_predict_layers", "head_dim", "text_config", "vision_config",
                   "attn_config", "ffn_config", "sub_configs"}


class Fields:
    """Reads one config dict, remembering which keys were consumed. The typed readers (req_int, opt_bool, ...)
    take JSON's types only: an int field refuses 2.5, "64" and true; a bool field refuses "false" (which
    Python's bool() would take as True); a float field takes ints. ValueError names the field."""

    def __init__(self, d: Mapping[str, Any], where: str):
        if not isinstance(d, Mapping):
            raise ValueError(f"{where} config.json: expected a JSON object, got {type(d).__name__}")
        self.d, self.where, self.used = d, where, set()

    def _key_of(self, keys):
        for k in keys:
            self.used.add(k)
        for k in keys:
            if self.d.get(k) is not None:
                return k
        return None

    def req(self, *keys):
        k = self._key_of(keys)
        if k is None:
            alt = f" (or {', '.join(map(repr, keys[1:]))})" if len(keys) > 1 else ""
            raise ValueError(f"{self.where} config.json: missing field {keys[0]!r}{alt}")
        return self.d[k]

    def opt(self, key, default):
        self.used.add(key)
        v = self.d.get(key)
        return default if v is None else v

    def _typed(self, key, v, kind):
        return typed(v, kind, f"{self.where} config.json: field {key!r}")

    def req_int(self, *keys) -> int:
        v = self.req(*keys)
        return self._typed(self._key_of(keys), v, int)

    def opt_int(self, key, default) -> int:
        return self._typed(key, self.opt(key, default), int)

    def req_size(self, field: str, *keys) -> int:
        """An int size field, bounded by moepy's limits (ModelConfig field `field`) before anything uses it."""
        v = self.req_int(*keys)
        hi = MAX_SIZE.get(field)
        if hi is not None and not 0 <= v <= hi:
            raise ValueError(f"{self.where} config.json: field {self._key_of(keys)!r} = {v:,} is out of range for "
                             f"{field} (0 .. {hi:,})")
        return v

    def opt_positive(self, key, default) -> int:
        """An int >= 1 (a layer period, a step: 0 would divide by zero)."""
        v = self.opt_int(key, default)
        if v < 1:
            raise ValueError(f"{self.where} config.json: field {key!r} must be >= 1, got {v}")
        return v

    def opt_bool(self, key, default) -> bool:
        return self._typed(key, self.opt(key, default), bool)

    def opt_float(self, key, default) -> float:
        return self._typed(key, self.opt(key, default), float)

    def opt_str(self, key, default) -> str:
        return self._typed(key, self.opt(key, default), str)

    def extra(self) -> dict:
        return {k: v for k, v in self.d.items() if k not in self.used and k not in NO_PASSTHROUGH}


def typed(v, kind, where: str):
    """v checked to be a JSON value of `kind` (int, bool, float or str); ValueError naming `where` if not."""
    if kind is bool:
        ok = isinstance(v, bool)
    elif kind is int:
        ok = isinstance(v, int) and not isinstance(v, bool)
    elif kind is float:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
    else:
        ok = isinstance(v, str)
    if not ok:
        raise ValueError(f"{where} must be {'a' if kind is not int else 'an'} {kind.__name__}, "
                         f"got {type(v).__name__} {v!r}")
    return kind(v)


def read_common(f: Fields, *, head_dim_default=True) -> dict:
    H = f.req_int("hidden_size")
    nh = f.req_int("num_attention_heads")
    kw = dict(vocab_size=f.req_size("vocab_size", "vocab_size"), hidden_size=H,
              num_layers=f.req_size("num_layers", "num_hidden_layers"),
              num_heads=nh, num_kv_heads=f.opt_int("num_key_value_heads", nh),
              tie_embeddings=f.opt_bool("tie_word_embeddings", False),
              max_context=f.opt_int("max_position_embeddings", 0), activation=f.opt_str("hidden_act", "silu"))
    if head_dim_default:
        f.used.add("head_dim")
        hd = f.d.get("head_dim")
        kw["head_dim"] = int(hd) if hd else None
    return kw


def dense_width(f: Fields, key: str, default: int, has_dense: bool) -> int:
    v = f.d.get(key)
    f.used.add(key)
    if v is not None:
        return int(v)
    return default if has_dense else 0


def qwen_layers(f: Fields, L: int):
    step = f.opt_positive("decoder_sparse_step", 1)
    mlo = f.opt("mlp_only_layers", [])
    if not isinstance(mlo, (list, tuple)) or not all(isinstance(i, int) and not isinstance(i, bool) for i in mlo):
        raise ValueError(f"{f.where} config.json: field 'mlp_only_layers' must be a list of ints, got {mlo!r}")
    mlo = tuple(mlo)
    has_dense = any(not ((i not in mlo) and (i + 1) % step == 0) for i in range(L))
    return step, mlo, has_dense


def read_deepseek_common(f: Fields, mt: str, family: str) -> dict:
    kw = read_common(f, head_dim_default=False)
    f.used.add("head_dim")
    fd = f.opt_int("first_k_dense_replace", 3 if family == "deepseek_v3" else 0)
    freq = f.opt_int("moe_layer_freq", 1)
    if freq != 1:
        raise ValueError(f"{mt} config.json: moe_layer_freq={freq} is not supported (transformers ignores it; "
                         f"every released DeepSeek model uses 1)")
    if f.opt_bool("mlp_bias", False):
        raise ValueError(f"{mt} config.json: mlp_bias=True is not supported")
    I = f.req_int("moe_intermediate_size")
    ns = int(f.opt("n_shared_experts", 1 if family == "deepseek_v3" else 0) or 0)
    kw.update(family=family, first_dense_layers=fd,
              dense_intermediate_size=dense_width(f, "intermediate_size", 18432 if family == "deepseek_v3" else 11008,
                                                   fd > 0),
              num_experts=f.req_int("n_routed_experts"), top_k=f.req_int("num_experts_per_tok"),
              expert_intermediate_size=I, num_shared_experts=ns, shared_intermediate_size=ns * I,
              attention_bias="all" if f.opt_bool("attention_bias", False) else "none")
    if family != "deepseek":
        kw.update(q_lora_rank=int(f.opt("q_lora_rank", 0) or 0), kv_lora_rank=f.req_int("kv_lora_rank"),
                  qk_nope_head_dim=f.req_int("qk_nope_head_dim"), qk_rope_head_dim=f.req_int("qk_rope_head_dim"),
                  v_head_dim=f.req_int("v_head_dim"))
    return kw


def write_common(c, model_type: str, arch: str, *, head_dim=True) -> dict:
    d = {"model_type": model_type, "architectures": [arch], "vocab_size": c.vocab_size, "hidden_size": c.hidden_size,
         "num_hidden_layers": c.num_layers, "num_attention_heads": c.num_heads, "num_key_value_heads": c.num_kv_heads,
         "hidden_act": c.activation, "tie_word_embeddings": c.tie_embeddings}
    if head_dim:
        d["head_dim"] = c.head_dim
    if c.max_context:
        d["max_position_embeddings"] = c.max_context
    return d


def write_qwen_layers(c, d: dict) -> None:
    d.update(decoder_sparse_step=c.moe_every, mlp_only_layers=list(c.mlp_only_layers),
             norm_topk_prob=c.router.normalize, num_experts=c.num_experts, num_experts_per_tok=c.top_k)
    if c.dense_intermediate_size:
        d["intermediate_size"] = c.dense_intermediate_size


def write_deepseek_common(c, d: dict) -> None:
    d.update(first_k_dense_replace=c.first_dense_layers, moe_layer_freq=1, n_routed_experts=c.num_experts,
             num_experts_per_tok=c.top_k, n_shared_experts=c.num_shared_experts,
             moe_intermediate_size=c.expert_intermediate_size, attention_bias=c.attention_bias == "all")
    if c.dense_intermediate_size:
        d["intermediate_size"] = c.dense_intermediate_size
    if c.is_mla:
        d.update(q_lora_rank=c.q_lora_rank or None, kv_lora_rank=c.kv_lora_rank, qk_nope_head_dim=c.qk_nope_head_dim,
                 qk_rope_head_dim=c.qk_rope_head_dim, v_head_dim=c.v_head_dim)


def spread_layers(L: int, n: int, period: int) -> List[int]:
    """n layer indices out of L in the families' default order: for period p, first the layers with
    (i + 1) % p != 0 (Llama 4's RoPE/chunked layers for p=4, gpt-oss's banded layers for p=2), then the rest."""
    first = [i for i in range(L) if (i + 1) % period != 0]
    rest = [i for i in range(L) if (i + 1) % period == 0]
    return sorted((first + rest)[:n])


def merge_extra(d: dict, extra: Mapping[str, Any]) -> dict:
    """Put unmodelled fields back under the modelled ones (modelled values win)."""
    if not extra:
        return d
    out = {**extra.get("", {}), **d}
    for sub in ("text_config", "vision_config", "attn_config", "ffn_config"):
        if sub in out and isinstance(out[sub], dict):
            out[sub] = {**extra.get(sub, {}), **out[sub]}
    return plain_json(out)
