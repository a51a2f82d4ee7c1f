"""MoEModel on DeepSeekMoE (config.json model_type `deepseek`, the remote-code DeepseekForCausalLM of
deepseek-moe-16b) against a reference built from transformers 5.23 pieces.

transformers has no `deepseek` model. DeepSeekMoE is a Llama decoder (MHA/GQA without biases, rotate-half RoPE,
RMSNorm, SwiGLU dense MLPs) whose layers i >= first_k_dense_replace hold an MoE block: softmax over all experts,
top-k, renormalised only if norm_topk_prob, no scaling, plus the shared experts as one MLP of width
n_shared_experts * moe_intermediate_size. transformers' DeepseekV2Moe with topk_method "greedy", one group and
routed_scaling_factor 1 computes that block (its router never renormalises: the norm_topk_prob=True case patches
the reference router to renormalise). So the reference is a LlamaForCausalLM whose MoE layers' `mlp` is a
DeepseekV2Moe; its tensors are written under the DeepSeekMoE checkpoint names with a hand-written config.json.
"""
import functools
import json
import os
import tempfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from moepy.families._layers import moe_layer_indices  # noqa: E402
from moepy.io.safetensors import save_file  # noqa: E402
from moepy.nn import MoEModel  # noqa: E402

H, NH, NKV, V, L = 32, 4, 2, 64, 3
DENSE, MOE_I, E, K, NS, FIRST_DENSE = 48, 16, 8, 3, 2, 1
_DIR = tempfile.mkdtemp(prefix="moepy-deepseek-v1-")

VARIANTS = {  # name: (per-expert names, norm_topk_prob, attention_bias)
    "split": (True, False, False),   # the Hub checkpoint's experts.{e}.{gate,up,down}_proj.weight
    "fused": (False, False, False),  # transformers v5's experts.gate_up_proj / experts.down_proj
    "renorm": (True, True, False),
    "attn_bias": (False, False, True),
}


def _config_json(norm_topk_prob: bool, attention_bias: bool) -> dict:
    """A DeepSeekMoE config.json (the fields of deepseek-moe-16b-base's, tiny sizes; rope_theta left out: 10000)."""
    return {
        "model_type": "deepseek", "architectures": ["DeepseekForCausalLM"], "vocab_size": V, "hidden_size": H,
        "intermediate_size": DENSE, "moe_intermediate_size": MOE_I, "num_hidden_layers": L,
        "num_attention_heads": NH, "num_key_value_heads": NKV, "n_shared_experts": NS, "n_routed_experts": E,
        "num_experts_per_tok": K, "moe_layer_freq": 1, "first_k_dense_replace": FIRST_DENSE,
        "norm_topk_prob": norm_topk_prob, "scoring_func": "softmax", "aux_loss_alpha": 0.001, "seq_aux": True,
        "hidden_act": "silu", "max_position_embeddings": 64, "initializer_range": 0.02, "rms_norm_eps": 1e-6,
        "use_cache": True, "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": False,
        "rope_scaling": None, "attention_bias": attention_bias, "attention_dropout": 0.0, "torch_dtype": "float32",
    }


def _renormalising(gate):
    """Patch a DeepseekV2TopkRouter so its top-k weights are divided by their sum (norm_topk_prob=True)."""
    forward = gate.forward

    def renormalised(hidden_states):
        logits, w, idx = forward(hidden_states)
        return logits, w / w.sum(dim=-1, keepdim=True), idx

    gate.forward = renormalised


def _reference(norm_topk_prob: bool, attention_bias: bool, seed: int = 0):
    """The seeded torch reference (eval mode): Llama with DeepseekV2Moe blocks in the layers >= FIRST_DENSE."""
    from transformers import DeepseekV2Config, LlamaConfig, LlamaForCausalLM
    from transformers.models.deepseek_v2.modeling_deepseek_v2 import DeepseekV2Moe
    cfg = LlamaConfig(vocab_size=V, hidden_size=H, intermediate_size=DENSE, num_hidden_layers=L,
                      num_attention_heads=NH, num_key_value_heads=NKV, max_position_embeddings=64, rms_norm_eps=1e-6,
                      attention_bias=attention_bias, tie_word_embeddings=False, hidden_act="silu")
    model = LlamaForCausalLM._from_config(cfg, attn_implementation="eager")
    moe_cfg = DeepseekV2Config(hidden_size=H, moe_intermediate_size=MOE_I, n_routed_experts=E,
                               num_experts_per_tok=K, n_shared_experts=NS, topk_method="greedy", n_group=1,
                               topk_group=1, norm_topk_prob=False, routed_scaling_factor=1.0, hidden_act="silu",
                               mlp_bias=False)
    for i in range(FIRST_DENSE, L):
        model.model.layers[i].mlp = DeepseekV2Moe(moe_cfg)
        if norm_topk_prob:
            _renormalising(model.model.layers[i].mlp.gate)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            r = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * r)
            elif "embed" in name:
                p.copy_(r)
            elif p.ndim == 1:  # attention biases
                p.copy_(0.1 * r)
            else:
                p.copy_(r * 0.5 / p.shape[-1] ** 0.5)
    return model.eval()


def _checkpoint_tensors(model, split: bool) -> dict:
    """The reference's state dict as NumPy under DeepSeekMoE names; split: per-expert gate/up/down_proj."""
    out = {}
    for name, t in model.state_dict().items():
        a = t.detach().numpy().copy()
        if split and name.endswith("experts.gate_up_proj"):
            base = name[:-len("gate_up_proj")]
            for e in range(a.shape[0]):
                out[f"{base}{e}.gate_proj.weight"] = np.ascontiguousarray(a[e, :MOE_I])
                out[f"{base}{e}.up_proj.weight"] = np.ascontiguousarray(a[e, MOE_I:])
        elif split and name.endswith("experts.down_proj"):
            base = name[:-len("down_proj")]
            for e in range(a.shape[0]):
                out[f"{base}{e}.down_proj.weight"] = np.ascontiguousarray(a[e])
        else:
            out[name] = a
    return out


@functools.lru_cache(maxsize=None)
def make(variant: str):
    """(torch reference, checkpoint directory, config dict) of VARIANTS[variant]."""
    split, renorm, bias = VARIANTS[variant]
    model = _reference(renorm, bias)
    path = os.path.join(_DIR, variant)
    os.makedirs(path, exist_ok=True)
    d = _config_json(renorm, bias)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(d, f)
    save_file(_checkpoint_tensors(model, split), os.path.join(path, "model.safetensors"))
    return model, path, d


def _ids(T, B=None, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, V, (T,) if B is None else (B, T))


def rel_err(a, ref) -> float:
    """max |a - ref| / max |ref|."""
    return float(np.abs(a - ref).max() / np.abs(ref).max())


def test_layer_kinds_and_spec():
    _, path, d = make("split")
    assert moe_layer_indices(d) == [1, 2]
    m = MoEModel.from_pretrained(path, progress=False)
    s = m.spec
    assert s.family == "deepseek" and s.moe_layers == (1, 2)
    assert [x.ffn for x in s.layers] == ["dense", "moe", "moe"] and s.layers[0].dense_intermediate_size == DENSE
    a = s.layers[0].attention
    assert (a.kind, a.num_heads, a.num_kv_heads, a.head_dim, a.qkv_bias, a.o_bias) == ("gqa", NH, NKV, H // NH,
                                                                                      False, False)
    assert a.rope.theta == 10000.0 and s.norm_eps == 1e-6


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_logits_match_reference(variant):
    ref_model, path, _ = make(variant)
    m = MoEModel.from_pretrained(path, progress=False)
    ids = _ids(13, B=2, seed=1)
    with torch.no_grad():
        ref = ref_model(torch.from_numpy(ids)).logits.float().numpy()
    got = m(ids)
    assert got.shape == ref.shape == (2, 13, V)
    assert rel_err(got, ref) < 1e-4


@pytest.mark.parametrize("variant", ["split", "renorm"])
def test_moe_block_matches_reference(variant):
    """MoELayer.from_hf-style reading of one block against the DeepseekV2Moe it was written from."""
    from moepy.families._layers import moe_layer_from_hf
    from moepy.io import open_checkpoint
    ref_model, path, d = make(variant)
    layer = moe_layer_from_hf(d, open_checkpoint(path), 2)
    x = np.random.default_rng(7).standard_normal((9, H)).astype(np.float32)
    with torch.no_grad():
        ref = ref_model.model.layers[2].mlp(torch.from_numpy(x)[None])[0].numpy()
    assert rel_err(layer(x), ref) < 1e-5
    with pytest.raises(ValueError, match="not an MoE layer"):
        moe_layer_from_hf(d, open_checkpoint(path), 0)


def test_prefill_then_decode_equals_full_forward():
    _, path, _ = make("split")
    m = MoEModel.from_pretrained(path, progress=False)
    ids = _ids(14, seed=4)
    full = m(ids)
    cache = m.new_cache()
    parts = [m(ids[:8], cache=cache)]
    for t in range(8, 14):
        parts.append(m(ids[t:t + 1], cache=cache))
    assert cache.length == 14
    assert rel_err(np.concatenate(parts), full) < 1e-5


def test_scoring_func_other_than_softmax_is_refused(tmp_path):
    from moepy.families.deepseek import moe_block
    _, _, d = make("split")
    with pytest.raises(ValueError, match="scoring_func"):
        moe_block({**d, "scoring_func": "sigmoid"}, {}, 1, "float32")
