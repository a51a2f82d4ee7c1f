"""moepy/families/jamba.py: the Jamba presets against AI21's published figures, the config.json mapping both ways,
parameter counts equal to what transformers' JambaForCausalLM allocates (Mamba layers included), and
MoELayer.from_hf against JambaSparseMoeBlock (beyond tests/families/test_layer_hf.py, which covers it with every
other family)."""
from __future__ import annotations

import copy
import json
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import moepy.configs as C
from moepy.configs import ModelConfig
from moepy.configs.model import _diff
from moepy.families import moe_layer_indices
from moepy.moe import MoELayer

from hf_blocks import make_block, make_input

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()
warnings.filterwarnings("ignore", module="transformers")

B = 1e9

# ai21labs/AI21-Jamba-1.5-Mini config.json; Jamba-v0.1's has the same sizes (eos 2); Jamba-1.5-Large's differs in
# the sizes below (arXiv:2408.12570: 72 layers, hidden 8192, 64 query / 8 KV heads, experts of 24576)
JAMBA_15_MINI = {
    "architectures": ["JambaForCausalLM"], "attention_dropout": 0.0, "attn_layer_offset": 4, "attn_layer_period": 8,
    "bos_token_id": 1, "eos_token_id": [2, 518], "expert_layer_offset": 1, "expert_layer_period": 2,
    "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
    "mamba_conv_bias": True, "mamba_d_conv": 4, "mamba_d_state": 16, "mamba_dt_rank": 256, "mamba_expand": 2,
    "mamba_proj_bias": False, "max_position_embeddings": 262144, "model_type": "jamba", "num_attention_heads": 32,
    "num_experts": 16, "num_experts_per_tok": 2, "num_hidden_layers": 32, "num_key_value_heads": 8,
    "num_logits_to_keep": 1, "output_router_logits": False, "pad_token_id": 0, "rms_norm_eps": 1e-06,
    "router_aux_loss_coef": 0.001, "sliding_window": None, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "use_cache": True, "use_mamba_kernels": True, "vocab_size": 65536,
}
JAMBA_V01 = dict(JAMBA_15_MINI, eos_token_id=2)
JAMBA_15_LARGE = dict(JAMBA_15_MINI, hidden_size=8192, intermediate_size=24576, num_hidden_layers=72,
                      num_attention_heads=64, mamba_dt_rank=512)
HUB = {"jamba-v0.1": JAMBA_V01, "jamba-1.5-mini": JAMBA_15_MINI, "jamba-1.5-large": JAMBA_15_LARGE}

# (preset, ParamCount quantity, published, half a unit of its last digit, source); AI21 counts the embedding
# and the head in both figures
PUBLISHED = [
    ("jamba-v0.1", "total", 52 * B, 0.5 * B, "Lieber et al. 2024, arXiv:2403.19887, and the ai21labs/Jamba-v0.1 "
                                             "model card: 52B total parameters"),
    ("jamba-v0.1", "active", 12 * B, 0.5 * B, "same: 12B active parameters"),
    ("jamba-1.5-mini", "total", 52 * B, 0.5 * B, "Jamba-1.5 (AI21 2024, arXiv:2408.12570), Table 1: 52B total"),
    ("jamba-1.5-mini", "active", 12 * B, 0.5 * B, "same: 12B active"),
    ("jamba-1.5-large", "total", 398 * B, 0.5 * B, "same: 398B total"),
    ("jamba-1.5-large", "active", 94 * B, 0.5 * B, "same: 94B active"),
]


@pytest.mark.parametrize("preset,quantity,published,half_unit,source", PUBLISHED,
                         ids=[f"{p[0]}:{p[1]}" for p in PUBLISHED])
def test_published_counts(preset, quantity, published, half_unit, source):
    """Within 1% (tests/configs' rule). Jamba-1.5-Large's 398.56B total is published as "398B" (truncated: it
    rounds to 399B); its 94.15B active as "94B"."""
    got = getattr(C.get(preset).count_params(), quantity)
    assert abs(got - published) / published <= 0.01, f"{preset} {quantity}: {got:.5g} vs {published:.5g} ({source})"
    if (preset, quantity) != ("jamba-1.5-large", "total"):
        assert abs(got - published) <= half_unit, f"{preset} {quantity}: {got:.5g} does not round to {published:.5g}"


@pytest.mark.xfail(strict=True, reason="AI21 publishes Jamba-1.5-Large as 398B total; its config gives 398.56B, "
                                       "which rounds to 399B (0.14% off: the published figure is truncated)")
def test_jamba_15_large_total_rounds_to_398b():
    assert abs(C.get("jamba-1.5-large").count_params().total - 398 * B) <= 0.5 * B


def test_exact_counts_pinned():
    # equal to what transformers allocates (test_full_size_count_equals_transformers)
    v01 = C.get("jamba-v0.1").count_params()
    assert (v01.total, v01.active) == (51_570_323_328, 12_110_311_296)
    large = C.get("jamba-1.5-large").count_params()
    assert (large.total, large.active) == (398_555_145_696, 94_149_338_592)
    # the Mamba mixers of Jamba-v0.1: 28 layers of in_proj, conv1d, x_proj, dt_proj, A_log, D, out_proj
    D, H, N, R = 8192, 4096, 16, 256
    per = 2 * D * H + D * 4 + D + (R + 2 * N) * D + D * R + D + D * N + D + H * D
    assert v01.mamba == 28 * per
    assert C.get("jamba-1.5-mini") == C.get("jamba-v0.1")  # the same architecture


def test_layout():
    c = C.get("jamba-v0.1")
    assert c.attention_layers == (4, 12, 20, 28) and len(c.mamba_layers) == 28
    assert c.moe_layers == tuple(range(1, 32, 2)) and c.dense_mlp_layers == tuple(range(0, 32, 2))
    assert c.mixer(4) == "attention" and c.mixer(5) == "mamba" and c.ffn(4) == "dense" and c.ffn(5) == "moe"
    assert len(C.get("jamba-1.5-large").attention_layers) == 9
    for alias in ("jamba", "ai21labs/Jamba-v0.1", "ai21labs/AI21-Jamba-1.5-Mini", "AI21-Jamba-1.5-Large"):
        assert C.get(alias).family == "jamba"
    assert C.get("ai21labs/AI21-Jamba-1.5-Large").name == "jamba-1.5-large"


def test_flops_kv_cache_and_state():
    c = C.get("jamba-v0.1")
    ctx = 4096
    assert c.kv_cache_bytes(ctx) == ctx * 4 * 2 * 8 * 128 * 2  # four attention layers
    f = c.flops_per_token(ctx)
    assert f.attention_scores == 2 * ctx * (2 * 32 * 128) * 4
    assert f.ssm_scan == 28 * 6 * 8192 * 16
    assert f.mamba == 2 * c.count_params().mamba
    assert c.recurrent_state_bytes() == 28 * (8192 * 16 + 8192 * 3) * 4
    assert "28 Mamba" in c.summary()


# ------------------------------------------------------------------------------------------------ config.json
@pytest.mark.parametrize("preset", sorted(HUB))
def test_from_hf_equals_preset(preset):
    hub = copy.deepcopy(HUB[preset])
    cfg = ModelConfig.from_hf(hub, name=preset)
    assert cfg == C.get(preset), _diff(cfg, C.get(preset))
    assert hub == HUB[preset], "from_hf mutated its input"
    obj = transformers.JambaConfig(**{k: v for k, v in hub.items() if k not in ("architectures", "model_type")})
    assert ModelConfig.from_hf(obj, name=preset) == cfg


@pytest.mark.parametrize("preset", sorted(HUB))
def test_to_hf_round_trip(preset):
    ref = C.get(preset)
    assert ModelConfig.from_hf(ref.to_hf(), name=preset) == ref
    out = ModelConfig.from_hf(HUB[preset], name=preset).to_hf()
    json.dumps(out)
    for key in ("rms_norm_eps", "router_aux_loss_coef", "eos_token_id", "attn_layer_period", "attn_layer_offset",
                "expert_layer_period", "expert_layer_offset", "mamba_dt_rank"):
        assert out[key] == HUB[preset][key], key


def test_dt_rank_auto_and_other_layouts():
    d = dict(JAMBA_V01, mamba_dt_rank="auto", expert_layer_period=4, expert_layer_offset=3, attn_layer_period=16,
             attn_layer_offset=0, num_hidden_layers=16)
    c = ModelConfig.from_hf(d)
    assert c.mamba["dt_rank"] == 256 and c.moe_layers == (3, 7, 11, 15) and c.attention_layers == (0,)
    back = c.to_hf()
    assert (back["expert_layer_period"], back["expert_layer_offset"]) == (4, 3)
    assert (back["attn_layer_period"], back["attn_layer_offset"]) == (16, 0)
    # no attention layer at all (an offset past the last layer), every layer MoE
    c2 = ModelConfig.from_hf(dict(d, attn_layer_period=32, attn_layer_offset=20, expert_layer_period=1,
                                  expert_layer_offset=0))
    assert c2.attention_layers == () and c2.moe_layers == tuple(range(16)) and c2.dense_mlp_layers == ()
    assert ModelConfig.from_hf(c2.to_hf()) == c2


@pytest.mark.parametrize("change,match", [
    (dict(expert_layer_offset=2), "expert_layer_offset=2"),
    (dict(attn_layer_period=0), "'attn_layer_period' must be >= 1"),
    (dict(mamba_conv_bias="false"), "'mamba_conv_bias' must be a bool, got str"),
    (dict(mamba_dt_rank=2.5), "'mamba_dt_rank' must be an int, got float"),
    (dict(mamba_d_state="16"), "'mamba_d_state' must be an int, got str"),
    (dict(intermediate_size=None), "missing field 'intermediate_size'"),
    (dict(num_experts=None), "missing field 'num_experts'"),
])
def test_from_hf_errors(change, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig.from_hf(dict(JAMBA_V01, **change))


def test_to_hf_errors():
    c = C.get("jamba-v0.1")
    ffns = list(c.layer_ffns)
    ffns[3] = "dense"  # MoE at 1, 5, 7, ...: no period and offset give that
    with pytest.raises(ValueError, match="not such a pattern"):
        c.replace(layer_ffns=tuple(ffns)).to_hf()
    with pytest.raises(ValueError, match="cannot express dense_intermediate_size"):
        c.replace(dense_intermediate_size=1024).to_hf()  # one intermediate_size for experts and MLPs


@pytest.mark.parametrize("change,match", [
    (dict(layer_mixers=("mamba",) * 31), "layer_mixers has 31 entries"),
    (dict(layer_mixers=("ssm",) * 32), "unknown kind"),
    (dict(mamba=None), "need the mamba sizes"),
    (dict(mamba={"d_state": 16}), "mamba: missing key"),
    (dict(mamba=dict(d_state=16, d_conv=4, expand=2, dt_rank=256, conv_bias=True, proj_bias=False,
                     inner_norms=True, n_groups=2)), "unknown key"),
    (dict(mamba=dict(d_state=0, d_conv=4, expand=2, dt_rank=256, conv_bias=True, proj_bias=False,
                     inner_norms=True)), r"mamba\['d_state'\] must be an int"),
    (dict(layer_mixers=("attention",) * 32), "no layer_mixers entry is 'mamba'"),
    (dict(moe_every=2), "layer_ffns places the MoE blocks"),
    (dict(layer_ffns=("dense",) * 32), "no layer is a MoE layer"),
])
def test_validation(change, match):
    with pytest.raises(ValueError, match=match):
        C.get("jamba-v0.1").replace(**change)


# ------------------------------------------------------------------------------------------------ vs transformers
def _hf_numel(d: dict) -> int:
    with torch.device("meta"):
        m = transformers.JambaForCausalLM(transformers.JambaConfig(
            **{k: v for k, v in d.items() if k not in ("architectures", "model_type")}))
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("preset", sorted(HUB))
def test_full_size_count_equals_transformers(preset):
    cfg = C.get(preset)
    assert _hf_numel(cfg.to_hf()) == cfg.count_params().total


@pytest.mark.parametrize("change", [
    {}, dict(tie_word_embeddings=True), dict(mamba_proj_bias=True, mamba_conv_bias=False),
    dict(expert_layer_period=3, expert_layer_offset=0, attn_layer_period=3, attn_layer_offset=2),
    dict(mamba_d_state=8, mamba_expand=3, mamba_dt_rank=5, num_key_value_heads=1),
])
def test_small_count_equals_transformers(change):
    d = dict(JAMBA_V01, hidden_size=64, intermediate_size=48, num_hidden_layers=6, num_attention_heads=4,
             num_key_value_heads=2, num_experts=4, vocab_size=100, mamba_dt_rank="auto")
    d.update(change)
    cfg = ModelConfig.from_hf(d)
    assert _hf_numel(d) == cfg.count_params().total
    assert ModelConfig.from_hf(cfg.to_hf()) == cfg


@pytest.mark.parametrize("preset", sorted(HUB))
def test_scaled_keeps_the_design(preset):
    s = C.get(preset).scaled()
    assert s.family == "jamba" and s.count_params().total < 1_000_000
    assert {(s.mixer(i), s.ffn(i)) for i in range(s.num_layers)} == \
        {("mamba", "dense"), ("mamba", "moe"), ("attention", "dense")}
    assert s.dense_intermediate_size == s.expert_intermediate_size and s.mamba["inner_norms"]
    assert ModelConfig.from_hf(s.to_hf()) == s
    assert _hf_numel(s.to_hf()) == s.count_params().total
    big = C.get(preset).scaled(num_layers=9, hidden_size=96, num_heads=6, num_experts=16, top_k=2)
    assert big.num_layers == 9 and big.attention_layers == (4,) and big.moe_layers == (1, 3, 5, 7)
    assert _hf_numel(big.to_hf()) == big.count_params().total


# ------------------------------------------------------------------------------------------------ MoE block
def rel_err(y, ref):
    return float(np.abs(y - ref).max() / np.abs(ref).max())


def test_moe_layer_indices_and_dense_layers():
    assert moe_layer_indices(JAMBA_V01) == list(range(1, 32, 2))
    b = make_block("jamba", layer_index=3, num_hidden_layers=4)
    with pytest.raises(ValueError, match=r"layer 2 is not an MoE layer.*\[1, 3\]"):
        MoELayer.from_hf(b.hf_config, b.tensors_legacy, 2)
    x = make_input(9, b.hidden, seed=1)
    m = MoELayer.from_hf(b.hf_config, b.tensors_legacy, 3)
    assert m.family == "jamba" and not m.router.normalize and m.shared is None
    assert rel_err(m(x), b.forward(x)) <= 1e-5


def test_whole_transformers_model_state_dict():
    """The MoE blocks of a whole (tiny, random) JambaForCausalLM, read from its own state_dict (v5 names)."""
    d = C.get("jamba-v0.1").scaled(num_layers=6).to_hf()
    torch.manual_seed(0)
    model = transformers.JambaForCausalLM(transformers.JambaConfig(
        **{k: v for k, v in d.items() if k not in ("architectures", "model_type")})).eval()
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    x = make_input(11, d["hidden_size"], seed=3)
    assert moe_layer_indices(d) == [1, 3, 5]
    for i in (1, 3, 5):
        block = model.model.layers[i].feed_forward
        with torch.no_grad():
            ref = block(torch.from_numpy(x)[None])[0].numpy()
        y = MoELayer.from_hf(d, sd, i)(x)
        assert rel_err(y, ref) <= 1e-5, i


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(L=st.integers(1, 9), ep=st.integers(1, 3), ap=st.integers(1, 5), H=st.sampled_from([16, 32]),
       E=st.integers(2, 5), heads=st.sampled_from([(2, 1), (4, 2)]), state=st.sampled_from([(4, 2, 2), (8, 3, 1)]),
       flags=st.tuples(st.booleans(), st.booleans(), st.booleans()), data=st.data())
def test_random_configs_count_equals_transformers(L, ep, ap, H, E, heads, state, flags, data):
    eo, ao = data.draw(st.integers(0, ep - 1)), data.draw(st.integers(0, ap - 1))
    if not any(i % ep == eo for i in range(L)):
        eo = 0
    d = dict(JAMBA_V01, num_hidden_layers=L, expert_layer_period=ep, expert_layer_offset=eo, attn_layer_period=ap,
             attn_layer_offset=ao, hidden_size=H, intermediate_size=12, num_attention_heads=heads[0],
             num_key_value_heads=heads[1], num_experts=E, num_experts_per_tok=min(2, E), vocab_size=50,
             mamba_d_state=state[0], mamba_d_conv=state[1], mamba_expand=state[2], mamba_dt_rank="auto",
             mamba_conv_bias=flags[0], mamba_proj_bias=flags[1], tie_word_embeddings=flags[2])
    cfg = ModelConfig.from_hf(d)
    assert _hf_numel(d) == cfg.count_params().total
    assert ModelConfig.from_hf(cfg.to_hf()) == cfg
