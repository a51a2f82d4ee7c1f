"""moepy.nn.rope against transformers 5.23: inv_freq, attention scaling, cos/sin and the three rotation layouts."""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from transformers import (DeepseekV2Config, DeepseekV3Config, GptOssConfig, Llama4TextConfig,  # noqa: E402
                          MixtralConfig)
from transformers.models.deepseek_v2 import modeling_deepseek_v2 as m_dsv2  # noqa: E402
from transformers.models.deepseek_v3 import modeling_deepseek_v3 as m_dsv3  # noqa: E402
from transformers.models.gpt_oss import modeling_gpt_oss as m_oss  # noqa: E402
from transformers.models.llama4 import modeling_llama4 as m_l4  # noqa: E402
from transformers.models.mixtral import modeling_mixtral as m_mix  # noqa: E402

from moepy.nn.rope import Rope, RopeSpec, rope_spec_from_hf, yarn_get_mscale  # noqa: E402

POS = np.array([[0, 1, 2, 7, 31, 100, 511, 1000, 2047]], dtype=np.int64)


def ulps(a, b):
    """Largest distance in float32 ulps between two float32 arrays of positive values."""
    return int(np.abs(a.view(np.int32).astype(np.int64) - b.view(np.int32).astype(np.int64)).max())


def mixtral(dim=64, **kw):
    d = dict(hidden_size=dim * 4, num_attention_heads=4, num_key_value_heads=4, head_dim=dim,
             max_position_embeddings=2048, **kw)
    return d, m_mix.MixtralRotaryEmbedding(MixtralConfig(**d))


def hf_cos_sin(emb, pos, dim):
    """Half-width cos/sin of a rotate-half rotary class (first half of cat(freqs, freqs))."""
    c, s = emb(torch.zeros(1), torch.from_numpy(pos))
    return c.numpy()[..., : dim // 2], s.numpy()[..., : dim // 2]


CASES = {
    "default": dict(rope_theta=1e6),
    "default_int_theta": dict(rope_theta=10000),
    "linear": dict(rope_theta=10000.0, rope_scaling={"type": "linear", "factor": 2.5}),
    "dynamic": dict(rope_theta=5e5, rope_scaling={"rope_type": "dynamic", "factor": 3.0}),
    "yarn": dict(rope_theta=10000.0, rope_scaling={"rope_type": "yarn", "factor": 4.0,
                                                    "original_max_position_embeddings": 512}),
    "yarn_no_truncate": dict(rope_theta=150000.0, rope_scaling={
        "rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0, "truncate": False,
        "original_max_position_embeddings": 512}),
    "yarn_mscale": dict(rope_theta=10000.0, rope_scaling={
        "rope_type": "yarn", "factor": 40.0, "mscale": 1.0, "mscale_all_dim": 0.707,
        "original_max_position_embeddings": 256}),
    "yarn_mscale_only": dict(rope_theta=10000.0, rope_scaling={
        "rope_type": "yarn", "factor": 40.0, "mscale": 0.5, "original_max_position_embeddings": 256}),
    "yarn_attention_factor": dict(rope_theta=10000.0, rope_scaling={
        "rope_type": "yarn", "factor": 4.0, "attention_factor": 0.8, "beta_fast": 0, "beta_slow": 2,
        "original_max_position_embeddings": 1024}),
    "yarn_default_original": dict(rope_theta=10000.0, rope_scaling={"rope_type": "yarn", "factor": 2.0}),
    "llama3": dict(rope_theta=5e5, rope_parameters={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 256}),
    "llama3_equal_freq_factors": dict(rope_theta=5e5, rope_parameters={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 2.0, "high_freq_factor": 2.0,
        "original_max_position_embeddings": 512}),
}


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("dim", [16, 64, 128])
@pytest.mark.parametrize("case", sorted(CASES))
def test_inv_freq_scaling_and_cos_sin_match_mixtral_rotary(case, dim):
    d, emb = mixtral(dim, **CASES[case])
    r = Rope(rope_spec_from_hf(d, dim, 1e6, "half"))
    assert r.inv_freq.dtype == np.float32 and r.inv_freq.shape == (dim // 2,)
    # torch's float32 pow is not always correctly rounded (ours is): at most one ulp apart
    assert ulps(r.inv_freq, emb.inv_freq.numpy()) <= 1
    assert r.attention_scaling == pytest.approx(emb.attention_scaling, rel=1e-15)
    c, s = r.cos_sin(POS)
    ct, st = hf_cos_sin(emb, POS, dim)
    assert c.shape == s.shape == POS.shape + (dim // 2,) and c.dtype == s.dtype == np.float32
    tol = 2e-5 * max(1.0, r.attention_scaling)
    assert np.abs(c - ct).max() < tol and np.abs(s - st).max() < tol


def test_inv_freq_bit_exact_where_torch_pow_is_correctly_rounded():
    for case in ("default", "linear", "yarn", "yarn_mscale", "llama3"):
        d, emb = mixtral(64, **CASES[case])
        np.testing.assert_array_equal(Rope(rope_spec_from_hf(d, 64, 1e6, "half")).inv_freq, emb.inv_freq.numpy())


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("dim", [16, 64])
def test_dynamic_state_follows_dynamic_rope_update(dim):
    d, emb = mixtral(dim, **CASES["dynamic"])
    r = Rope(rope_spec_from_hf(d, dim, 1e6, "half"))
    original = r.inv_freq.copy()
    # below max, above (growth), lower but above the original (kept), higher again, below (reset), exactly max
    for top in (100, 2047, 3000, 2500, 5000, 10, 2048, 2049):
        pos = np.arange(max(0, top - 40), top + 1, dtype=np.int64)[None]
        ct, st = hf_cos_sin(emb, pos, dim)
        c, s = r.cos_sin(pos)
        assert r._max_seq_len_cached == int(emb.max_seq_len_cached)
        assert ulps(r.inv_freq, emb.inv_freq.numpy()) <= 1
        # one ulp of torch's pow in an inv_freq near 1, times ~5000: up to ~6e-5 in cos/sin
        assert np.abs(c - ct).max() < 1e-4 and np.abs(s - st).max() < 1e-4
        if top in (100, 2047, 10):
            np.testing.assert_array_equal(r.inv_freq, original)
    assert not np.array_equal(r.inv_freq, original)  # top 2049 (seq_len 2050) grew it again
    c, s = r.cos_sin(np.zeros((0,), np.int64))  # empty positions: no state change
    assert c.shape == (0, dim // 2) and r._max_seq_len_cached == 2050


def _rotary(cls_mod, cls_name, cfg):
    return getattr(cls_mod, cls_name)(cfg)


@pytest.mark.filterwarnings("ignore")
def test_deepseek_v3_yarn_rotary_and_mscale():
    kw = dict(hidden_size=64, num_attention_heads=2, q_lora_rank=None, kv_lora_rank=16, qk_nope_head_dim=16,
              qk_rope_head_dim=32, v_head_dim=16, max_position_embeddings=8192, rope_theta=10000.0)
    for rs in ({"type": "yarn", "factor": 40.0, "mscale": 1.0, "mscale_all_dim": 1.0,
                "original_max_position_embeddings": 4096, "beta_fast": 32, "beta_slow": 1},
               {"type": "yarn", "factor": 8.0, "mscale": 1.0, "mscale_all_dim": 0.5,
                "original_max_position_embeddings": 1024}):
        d = dict(kw, rope_scaling=rs)
        emb = m_dsv3.DeepseekV3RotaryEmbedding(DeepseekV3Config(**d))
        r = Rope(rope_spec_from_hf(d, 32, 10000.0, "pairs_to_half"))
        assert ulps(r.inv_freq, emb.inv_freq.numpy()) <= 1
        assert r.attention_scaling == pytest.approx(emb.attention_scaling, rel=1e-15)
        ct, st = hf_cos_sin(emb, POS, 32)
        c, s = r.cos_sin(POS)
        assert np.abs(c - ct).max() < 2e-5 and np.abs(s - st).max() < 2e-5
        f, ms = rs["factor"], rs["mscale_all_dim"]
        assert yarn_get_mscale(f, ms) == m_dsv3.yarn_get_mscale(f, ms) == m_dsv2.yarn_get_mscale(f, ms)
    assert yarn_get_mscale(1.0, 3.0) == 1.0 and yarn_get_mscale(0.5) == 1.0


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("which", ["llama4", "dsv2"])
def test_complex_rotary_classes(which):
    if which == "llama4":
        d = dict(hidden_size=128, num_attention_heads=2, head_dim=64, max_position_embeddings=4096,
                 rope_parameters={"rope_type": "llama3", "factor": 16.0, "low_freq_factor": 1.0,
                                  "high_freq_factor": 4.0, "original_max_position_embeddings": 1024})
        emb, dim, theta = m_l4.Llama4TextRotaryEmbedding(Llama4TextConfig(**d)), 64, 5e5
    else:
        d = dict(hidden_size=64, num_attention_heads=2, q_lora_rank=None, kv_lora_rank=16, qk_nope_head_dim=16,
                 qk_rope_head_dim=32, v_head_dim=16, rope_theta=10000.0)
        emb, dim, theta = m_dsv2.DeepseekV2RotaryEmbedding(DeepseekV2Config(**d)), 32, 10000.0
    r = Rope(rope_spec_from_hf(d, dim, theta, "pairs"))
    assert r.spec.theta == emb.config.rope_parameters["rope_theta"]
    assert ulps(r.inv_freq, emb.inv_freq.numpy()) <= 1
    cis = emb(torch.zeros(1), torch.from_numpy(POS)).numpy()  # torch.polar: not bit-equal to cos/sin
    c, s = r.cos_sin(POS)
    assert np.abs(c - cis.real).max() < 2e-5 and np.abs(s - cis.imag).max() < 2e-5


@pytest.mark.filterwarnings("ignore")
def test_gpt_oss_default_yarn_rotary():
    d = dict(hidden_size=64, num_attention_heads=2, num_key_value_heads=1, head_dim=64, num_local_experts=4)
    cfg = GptOssConfig(**d)
    emb = m_oss.GptOssRotaryEmbedding(cfg)
    r = Rope(rope_spec_from_hf(dict(d, rope_parameters=dict(cfg.rope_parameters)), 64, 150000.0, "half"))
    assert r.spec.rope_type == "yarn" and r.spec.params["truncate"] is False
    assert ulps(r.inv_freq, emb.inv_freq.numpy()) <= 1
    assert r.attention_scaling == pytest.approx(emb.attention_scaling, rel=1e-15)
    c, s = emb(torch.zeros(1), torch.from_numpy(POS))
    mc, ms = r.cos_sin(POS)
    assert np.abs(mc - c.numpy()).max() < 3e-5 and np.abs(ms - s.numpy()).max() < 3e-5


# ---- apply: the same cos/sin through moepy and through each model's own rotation ----

def _rand_qk(rng, dim, b=2, t=5, h=3):
    return (rng.standard_normal((b, t, h, dim)).astype(np.float32),
            rng.standard_normal((b, t, 1, dim)).astype(np.float32))


def _check(ours, ref):
    ref = np.asarray(ref)
    assert ours.shape == ref.shape and ours.dtype == np.float32
    assert np.abs(ours - ref).max() <= 1e-5 * np.abs(ref).max()


def _cos_sin(dim, rope_type="default", params=None, layout="half"):
    pos = np.array([[0, 3, 17, 400, 1999], [5, 6, 7, 8, 9]], dtype=np.int64)
    r = Rope(RopeSpec(dim, 10000.0, rope_type, params or {}, layout))
    c, s = r.cos_sin(pos)
    return r, c, s, torch.from_numpy(np.concatenate([c, c], -1)), torch.from_numpy(np.concatenate([s, s], -1))


@pytest.mark.parametrize("mod", [m_mix, m_dsv3])
def test_apply_half_matches_rotate_half(mod):
    rng = np.random.default_rng(0)
    r, c, s, cf, sf = _cos_sin(64, "yarn", {"factor": 4.0, "original_max_position_embeddings": 512})
    q, k = _rand_qk(rng, 64)
    qt, kt = mod.apply_rotary_pos_emb(torch.from_numpy(q), torch.from_numpy(k), cf, sf, unsqueeze_dim=2)
    _check(r.apply(q, c, s), qt)
    _check(r.apply(k, c, s), kt)
    # heads-first layout of the model: (b, h, t, d), unsqueeze_dim=1
    qt1, _ = mod.apply_rotary_pos_emb(torch.from_numpy(q).transpose(1, 2), torch.from_numpy(k).transpose(1, 2),
                                      cf, sf)
    _check(r.apply(q, c, s), qt1.transpose(1, 2))


def test_apply_half_matches_gpt_oss():
    rng = np.random.default_rng(1)
    r, c, s, _, _ = _cos_sin(32)
    q, k = _rand_qk(rng, 32)
    qt, kt = m_oss.apply_rotary_pos_emb(torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(c),
                                        torch.from_numpy(s), unsqueeze_dim=2)
    _check(r.apply(q, c, s), qt)
    _check(r.apply(k, c, s), kt)


def test_apply_pairs_to_half_matches_deepseek_v3_interleave():
    rng = np.random.default_rng(2)
    r, c, s, cf, sf = _cos_sin(32, layout="pairs_to_half")
    q, k = _rand_qk(rng, 32)
    qt, kt = m_dsv3.apply_rotary_pos_emb_interleave(torch.from_numpy(q), torch.from_numpy(k), cf, sf,
                                                     unsqueeze_dim=2)
    _check(r.apply(q, c, s), qt)
    _check(r.apply(k, c, s), kt)
    # = de-interleave, then rotate-half
    perm = np.r_[0:32:2, 1:32:2]
    _check(r.apply(q, c, s), Rope(RopeSpec(32, 10000.0)).apply(q[..., perm], c, s))


def test_apply_pairs_matches_complex_forms():
    rng = np.random.default_rng(3)
    r, c, s, _, _ = _cos_sin(32, layout="pairs")
    q, k = _rand_qk(rng, 32)
    cis = torch.complex(torch.from_numpy(c), torch.from_numpy(s))
    # Llama 4: (b, t, h, d), freqs_cis (b, t, d/2)
    qt, kt = m_l4.apply_rotary_emb(torch.from_numpy(q), torch.from_numpy(k), cis)
    _check(r.apply(q, c, s), qt)
    _check(r.apply(k, c, s), kt)
    # DeepSeek-V2: heads first (b, h, t, d)
    qt, kt = m_dsv2.apply_rotary_emb(torch.from_numpy(q).transpose(1, 2), torch.from_numpy(k).transpose(1, 2), cis)
    _check(r.apply(q, c, s), qt.transpose(1, 2))
    _check(r.apply(k, c, s), kt.transpose(1, 2))


def test_apply_shapes_and_errors():
    r, c, s, _, _ = _cos_sin(8)
    x = np.ones((2, 5, 3, 8), np.float32)
    out = r.apply(x, c, s)
    assert out.shape == x.shape and out is not x and np.array_equal(x, np.ones_like(x))
    out1 = r.apply(x[0], c[0], s[0])  # no batch dim
    np.testing.assert_array_equal(out1, out[0])
    np.testing.assert_array_equal(r.apply(x, c[:1], s[:1])[1], r.apply(x[1:], c[:1], s[:1])[0])  # broadcast
    np.testing.assert_array_equal(r.apply(x.astype(np.float64), c, s), out)
    assert np.allclose(r.apply(x, *r.cos_sin(np.zeros((2, 5), np.int64))), x)  # position 0 is the identity
    with pytest.raises(ValueError, match="x must"):
        r.apply(np.ones((2, 5, 3, 6), np.float32), c, s)
    with pytest.raises(ValueError, match="cos and sin"):
        r.apply(x, c[..., :2], s[..., :2])
    with pytest.raises(ValueError, match="broadcast"):
        r.apply(x, c[:, :4], s[:, :4])
    with pytest.raises(ValueError, match="broadcast"):  # cos/sin must not widen x
        r.apply(x[:1], c, s)
    with pytest.raises(TypeError, match="positions"):
        r.cos_sin(np.array([0.5]))
    c3, _ = r.cos_sin(np.arange(24).reshape(2, 3, 4))
    assert c3.shape == (2, 3, 4, 4)


# ---- rope_spec_from_hf ----

@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("d", [
    dict(rope_scaling={"type": "linear", "factor": 2.0}, rope_theta=1234.0),
    dict(rope_scaling={"type": "yarn", "factor": 4.0, "beta_fast": 16}, max_position_embeddings=4096),
    dict(rope_scaling={"type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0},
         rope_theta=5e5, max_position_embeddings=1024),
    dict(rope_parameters={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 99.0}, rope_theta=7.0),
    dict(rope_parameters={"rope_type": "linear", "factor": 2.0}, rope_scaling={"type": "dynamic", "factor": 3.0}),
    dict(rope_parameters={"rope_type": "yarn", "factor": 2.0}, rope_scaling={}),  # falsy legacy dict: ignored
    dict(rope_parameters={"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 100},
         original_max_position_embeddings=300, max_position_embeddings=600),
    dict(rope_parameters={"rope_type": "yarn", "factor": 2.0},
         original_max_position_embeddings=300, max_position_embeddings=600),
    dict(),
])
def test_spec_from_hf_resolves_like_transformers(d):
    d = dict(dict(hidden_size=64, num_attention_heads=2, head_dim=32, max_position_embeddings=2048), **d)
    cfg = MixtralConfig(**{k: (dict(v) if isinstance(v, dict) else v) for k, v in d.items()})
    spec = rope_spec_from_hf(d, 32, 1e6, "half")
    emb = m_mix.MixtralRotaryEmbedding(cfg)
    # read after building the rotary: its init re-standardizes, and a top-level
    # original_max_position_embeddings (an attribute by then) overrides the rope dict's
    rp = cfg.rope_parameters
    assert spec.rope_type == rp["rope_type"] and spec.theta == rp["rope_theta"]
    assert spec.max_position_embeddings == cfg.max_position_embeddings
    for k, v in rp.items():
        if k not in ("rope_type", "type", "rope_theta"):
            assert spec.params[k] == v, k
    assert ulps(Rope(spec).inv_freq, emb.inv_freq.numpy()) <= 1


@pytest.mark.parametrize("d, dim, match", [
    ({"rope_scaling": {"type": "longrope", "factor": 2.0}}, 8, "longrope.*not supported"),
    ({"rope_parameters": {"rope_type": "su"}}, 8, "'su' is not supported"),
    ({"rope_parameters": {"rope_type": "linear", "factor": 0}}, 8, "factor"),
    ({"rope_parameters": {"rope_type": "linear", "factor": -2.0}}, 8, "factor"),
    ({"rope_parameters": {"rope_type": "dynamic"}}, 8, "factor"),
    ({"rope_parameters": {"rope_type": "yarn", "factor": "4"}}, 8, "factor"),
    ({"rope_parameters": {"rope_type": "llama3", "factor": 8.0, "high_freq_factor": 4.0}}, 8, "low_freq_factor"),
    ({"rope_parameters": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 0, "high_freq_factor": 4.0}},
     8, "low_freq_factor"),
    ({"rope_parameters": {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 0}}, 8,
     "original_max_position_embeddings"),
    ({"rope_parameters": {"rope_type": "yarn", "factor": 2.0, "attention_factor": -1.0}}, 8, "attention_factor"),
    ({"rope_parameters": {"rope_type": "yarn", "factor": 2.0, "beta_fast": "x"}}, 8, "beta_fast"),
    ({"rope_parameters": {"rope_type": "yarn", "factor": 2.0, "rope_theta": 1.0}}, 8, "theta"),
    ({"rope_theta": -1.0}, 8, "theta"),
    ({"rope_theta": None}, 8, "rope_theta"),
    ({"rope_theta": float("nan")}, 8, "theta"),
    ({"max_position_embeddings": 0}, 8, "max_position_embeddings"),
    ({"partial_rotary_factor": 0.5}, 8, "partial_rotary_factor.*not supported"),
    ({"rope_scaling": [1, 2]}, 8, "rope_parameters"),
    ({}, 7, "dim"),
    ({}, 0, "dim"),
])
def test_spec_from_hf_rejects(d, dim, match):
    with pytest.raises(ValueError, match=match):
        rope_spec_from_hf(d, dim, 10000.0, "half")


def test_spec_direct_construction():
    with pytest.raises(ValueError, match="layout"):
        RopeSpec(8, 10000.0, layout="interleaved")
    with pytest.raises(ValueError, match="rope_type"):
        RopeSpec(8, 10000.0, "longrope")
    s = RopeSpec(8, 10000.0, "yarn", {"factor": None, "original_max_position_embeddings": 512},
                 max_position_embeddings=4096)
    assert Rope(s).attention_scaling == pytest.approx(0.1 * math.log(8) + 1)  # factor None: max_pos / original
    assert s == RopeSpec(8, 10000.0, "yarn", {"factor": None, "original_max_position_embeddings": 512},
                         max_position_embeddings=4096)
    hash(s)
    assert RopeSpec(8, 10000.0, "yarn", {"factor": 2.0}).original_max_position_embeddings == 2048
    with pytest.raises(TypeError, match="RopeSpec"):
        Rope({"dim": 8})
