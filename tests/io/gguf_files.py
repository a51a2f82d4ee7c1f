"""Test support: GGUF files written by the `gguf` package from a Hugging Face checkpoint, named as llama.cpp's
converter names them (gguf.get_tensor_name_map; experts stacked into ffn_*_exps; llama's q/k permuted)."""
import re

import gguf
import numpy as np

ARCH = {"olmoe": gguf.MODEL_ARCH.OLMOE, "qwen2_moe": gguf.MODEL_ARCH.QWEN2MOE, "qwen3_moe": gguf.MODEL_ARCH.QWEN3MOE,
        "mixtral": gguf.MODEL_ARCH.LLAMA}


def permute(w, n_head, n_head_kv=None):
    """convert_hf_to_gguf's LlamaModel.permute (reimplemented for the test)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def hf_tensors_to_gguf(tensors, cfg):
    """HF name -> array  =>  GGUF name -> float32 array (experts stacked, q/k permuted for llama)."""
    family = cfg["model_type"]
    L = cfg["num_hidden_layers"]
    names = gguf.get_tensor_name_map(ARCH[family], L)
    out, stacks = {}, {}
    for name in tensors:
        a = np.asarray(tensors[name]).astype(np.float32)
        m = re.match(r"^(model\.layers\.\d+\.(?:mlp|block_sparse_moe)\.experts)\.(\d+)\.(\w+)\.weight$", name)
        if m:
            stacks.setdefault(f"{m.group(1)}.{m.group(3)}", {})[int(m.group(2))] = a
            continue
        base, suffix = name.rsplit(".", 1)
        g = names.get_name(base)
        assert g is not None, name
        if family == "mixtral" and g.endswith("attn_q"):
            a = permute(a, cfg["num_attention_heads"], cfg["num_attention_heads"])
        if family == "mixtral" and g.endswith("attn_k"):
            a = permute(a, cfg["num_attention_heads"], cfg["num_key_value_heads"])
        out[f"{g}.{suffix}"] = a
    for base, per in stacks.items():
        g = names.get_name(base)
        out[f"{g}.weight"] = np.stack([per[e] for e in sorted(per)])
    return out


IQ4_NL_VALUES = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], np.float32)


def iq4_nl_blocks(a):
    """IQ4_NL bytes of a (..., K) (gguf-py only reads the type): per 32 values d = (signed max) / -127 in fp16 and
    each value's nearest level; a block is d then 16 bytes, value j in the low and j + 16 in the high nibble."""
    *lead, K = a.shape
    b = a.reshape(-1, K // 32, 32).astype(np.float32)
    mx = np.take_along_axis(b, np.abs(b).argmax(-1)[..., None], -1)
    d = (mx / -127.0).astype(np.float16)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(d != 0, b / d.astype(np.float32), 0.0)
    q = np.abs(v[..., None] - IQ4_NL_VALUES).argmin(-1).astype(np.uint8)
    out = np.concatenate([d.view(np.uint8), q[..., :16] | (q[..., 16:] << 4)], axis=-1)
    return out.reshape(*lead, K // 32 * 18)


def write_gguf(path, tensors, cfg, qtype=gguf.GGMLQuantizationType.F32, float_type=gguf.GGMLQuantizationType.F32,
               tokenizer=False):
    """Write a GGUF file of `cfg`: matrices whose rows are whole blocks in `qtype`, the rest in `float_type`.
    tokenizer: write the tokenizer arrays and no `{arch}.vocab_size`, as llama.cpp's converter does."""
    family = cfg["model_type"]
    arch = gguf.MODEL_ARCH_NAMES[ARCH[family]]
    w = gguf.GGUFWriter(str(path), arch)
    H, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg.get("max_position_embeddings", 64))
    w.add_embedding_length(H)
    w.add_head_count(heads)
    w.add_head_count_kv(cfg.get("num_key_value_heads", heads))
    theta = cfg.get("rope_theta") or (cfg.get("rope_parameters") or {}).get("rope_theta", 10000.0)  # v5: nested
    w.add_rope_freq_base(float(theta))
    w.add_layer_norm_rms_eps(float(cfg.get("rms_norm_eps", 1e-5)))
    w.add_expert_count(cfg.get("num_experts") or cfg.get("num_local_experts"))
    w.add_expert_used_count(cfg["num_experts_per_tok"])
    if family in ("qwen2_moe", "qwen3_moe"):
        w.add_feed_forward_length(cfg["intermediate_size"])
        w.add_expert_feed_forward_length(cfg["moe_intermediate_size"])
        if family == "qwen2_moe":
            w.add_expert_shared_feed_forward_length(cfg["shared_expert_intermediate_size"])
        else:
            w.add_key_length(cfg["head_dim"])
            w.add_value_length(cfg["head_dim"])
    else:
        w.add_feed_forward_length(cfg["intermediate_size"])
    if tokenizer:
        V = cfg["vocab_size"]
        w.add_tokenizer_model("gpt2")
        w.add_token_list([f"t{i}" for i in range(V)])
        w.add_token_types([1] * V)
        w.add_token_merges(["t 0"])
    else:
        w.add_vocab_size(cfg["vocab_size"])
    g = hf_tensors_to_gguf(tensors, cfg)
    for name, a in g.items():
        t = qtype if (a.ndim >= 2 and a.shape[-1] % 32 == 0) else float_type
        if t == gguf.GGMLQuantizationType.F32:
            w.add_tensor(name, a)
        elif t == gguf.GGMLQuantizationType.F16:
            w.add_tensor(name, a.astype(np.float16))
        elif t == gguf.GGMLQuantizationType.IQ4_NL:
            w.add_tensor(name, iq4_nl_blocks(a), raw_dtype=t)
        else:
            w.add_tensor(name, gguf.quants.quantize(a, t), raw_dtype=t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return g
