"""MoEModel.save_pretrained and what from_pretrained reads back of it; the checkpoint's tokenizer.

A saved directory holds:
    config.json              the model's config.json, plus a "moepy" entry (format version, dtype, quantization)
    model.safetensors        every tensor outside the MoE blocks under its checkpoint name (F32, or BF16 for a
                             bf16 model): embeddings, norms, attention, dense MLPs, head
    moepy-moe/layer-NNNNN.safetensors   each MoE block in moepy's layer format (moepy.io.layer_io: router, float
                             experts as F32 / BF16, INT experts as their blocks with format and group size)
    tokenizer files          copied from the checkpoint the model came from, when it had them
from_pretrained finds moepy-moe/ and loads those layers as they are (bit-exact, no re-quantization).
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Dict, Optional

import numpy as np

MOE_DIR = "moepy-moe"
FORMAT = "1"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json")


def _bf16(a: np.ndarray) -> np.ndarray:
    import ml_dtypes
    return np.ascontiguousarray(a).view(ml_dtypes.bfloat16)


def _linear(out: dict, name: str, lin) -> None:
    w = lin.weight
    out[name + ".weight"] = _bf16(w) if w.dtype == np.uint16 else w
    if lin.bias is not None:
        out[name + ".bias"] = lin.bias


def model_tensors(model) -> Dict[str, np.ndarray]:
    """Every non-MoE tensor of the model under its checkpoint name (the inverse of moepy.nn.decoder.Loader)."""
    from .attention import MLAAttention
    spec, n, root = model.spec, model.spec.names, model.root
    out: Dict[str, np.ndarray] = {}
    emb = model.embed
    out[root + n.embed] = _bf16(emb) if emb.dtype == np.uint16 else emb
    for layer in model.layers:
        p = root + n.layer.format(i=layer.index)
        out[p + n.attn_norm], out[p + n.ffn_norm] = layer.attn_norm, layer.ffn_norm
        a, at = p + n.attn, layer.attention
        if isinstance(at, MLAAttention):
            if at.q is not None:
                _linear(out, a + "q_proj", at.q)
            else:
                _linear(out, a + "q_a_proj", at.q_a)
                out[a + "q_a_layernorm.weight"] = at.q_a_norm
                _linear(out, a + "q_b_proj", at.q_b)
            _linear(out, a + "kv_a_proj_with_mqa", at.kv_a)
            out[a + "kv_a_layernorm.weight"] = at.kv_a_norm
            out[a + "kv_b_proj.weight"] = np.concatenate([at.w_uk, at.w_uv], axis=1).reshape(-1, at.spec.kv_lora_rank)
            _linear(out, a + "o_proj", at.o)
        else:
            if at.spec.fused_qkv:
                _linear(out, a + n.qkv, at.qkv)
            else:
                for nm, lin in ((n.q, at.q), (n.k, at.k), (n.v, at.v)):
                    _linear(out, a + nm, lin)
            _linear(out, a + n.o, at.o)
            if at.q_norm is not None:
                out[a + "q_norm.weight"], out[a + "k_norm.weight"] = at.q_norm, at.k_norm
            if at.sinks is not None:
                out[a + "sinks"] = at.sinks
        if not layer.is_moe:
            w, m = layer.ffn.weights, p + n.mlp
            for nm, arr, b in (("gate_proj", w.gate, w.gate_bias), ("up_proj", w.up, w.up_bias),
                               ("down_proj", w.down, w.down_bias)):
                arr = arr[0]
                out[f"{m}{nm}.weight"] = _bf16(arr) if arr.dtype == np.uint16 else np.asarray(arr, np.float32)
                if b is not None:
                    out[f"{m}{nm}.bias"] = np.asarray(b[0], np.float32)
    out[root + n.final_norm] = model.final_norm
    if not spec.tie_embeddings:
        _linear(out, model.head_name[: -len(".weight")], model.head)
    return out


def save_pretrained(model, path) -> None:
    """See the module docstring."""
    from ..io.safetensors import save_file
    path = os.fspath(path)
    os.makedirs(os.path.join(path, MOE_DIR), exist_ok=True)
    d = dict(model.hf_config)
    d["moepy"] = {"format": FORMAT, "dtype": model.dtype, "quantize": model.quantize,
                  "group_size": model.group_size, "moe_layers": MOE_DIR}
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(d, f, indent=2)
        f.write("\n")
    save_file(model_tensors(model), os.path.join(path, "model.safetensors"), {"format": "np", "moepy": FORMAT})
    for i, layer in model.moe_layers.items():
        layer.save(os.path.join(path, MOE_DIR, f"layer-{i:05d}.safetensors"))
    src = getattr(model.tokenizer, "source_dir", None)
    if src and os.path.abspath(src) != os.path.abspath(path):
        for name in TOKENIZER_FILES:
            if os.path.isfile(os.path.join(src, name)):
                shutil.copyfile(os.path.join(src, name), os.path.join(path, name))


def load_saved_layers(path: str) -> Optional[dict]:
    """The MoE layers a save_pretrained directory holds (index -> MoELayer), or None for another checkpoint."""
    from ..moe.layer import MoELayer
    where = os.path.join(path, MOE_DIR)
    if not os.path.isdir(where):
        return None
    out = {}
    for name in sorted(os.listdir(where)):
        if name.startswith("layer-") and name.endswith(".safetensors") and name[6:-12].isdigit():
            out[int(name[6:-12])] = MoELayer.load(os.path.join(where, name))
    return out


def convert_layer(layer, dtype: str, quantize: Optional[str], group_size: int):
    """A saved MoE layer in the dtype / quantization asked for: float experts are repacked (float32 <-> bf16) and
    quantized; INT experts are used as they are and must match `quantize` (ValueError otherwise)."""
    from ..moe import quant
    from ..moe.layer import MoELayer
    if layer.dtype in quant.FORMATS:
        if quantize not in (None, layer.dtype) or (quantize and group_size != layer.group_size):
            raise ValueError(f"quantize={quantize!r}, group_size={group_size}: the saved layer holds {layer.dtype} "
                             f"experts in groups of {layer.group_size} (load it without quantize=)")
        return layer
    if layer.dtype != dtype:
        layer = MoELayer(**{**layer._init_args, "dtype": dtype, "shared_dtype": dtype})
    return layer.quantize(quantize, group_size) if quantize else layer


def saved_settings(d: dict) -> dict:
    """The dtype / quantize / group_size a save_pretrained config.json records ({} for another checkpoint)."""
    m = d.get("moepy")
    if not isinstance(m, dict):
        return {}
    return {k: m[k] for k in ("dtype", "quantize", "group_size") if k in m}


def tokenizer_for(path: str):
    """The checkpoint's tokenizer (moepy.nn.tokenizer.Tokenizer) if it has a tokenizer.json, else None."""
    if not os.path.isfile(os.path.join(path, "tokenizer.json")):
        return None
    from .tokenizer import Tokenizer
    return Tokenizer.from_dir(path)
