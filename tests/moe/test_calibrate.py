"""Calibrated INT4 (moepy.moe.calibrate): GPTQ against plain rounding, the packed blocks, the fallback for rare experts."""
import numpy as np
import pytest

from moepy.eval import builtin, evaluate
from moepy.moe.calibrate import calibrate_int4, gptq, gptq_int4, output_error, refine
from moepy.nn import MoEModel
from moepy.reference.quant import dequantize_weights, quantize_weights


def test_gptq_with_a_diagonal_hessian_is_plain_rounding():
    w = np.random.default_rng(0).standard_normal((24, 64)).astype(np.float32)
    u, s16 = gptq_int4(w, np.eye(64) * 3.0, 32, act_order=False)
    u0, s0, _ = quantize_weights(w[None], "int4", 32)
    assert np.array_equal(u, u0[0]) and np.array_equal(s16, s0[0])


@pytest.mark.parametrize("fmt", ["int4_asym", "int4_nl"])
def test_other_formats_gptq_with_a_diagonal_hessian_is_plain_rounding(fmt):
    w = np.random.default_rng(0).standard_normal((24, 128)).astype(np.float32)
    u, s16, m16 = gptq(w, np.eye(128) * 3.0, 64, act_order=False, fmt=fmt)
    u0, s0, m0 = quantize_weights(w[None], fmt, 64)
    assert np.array_equal(u, u0[0]) and np.array_equal(s16, s0[0])
    assert (m16 is None and m0 is None) if fmt == "int4_nl" else np.array_equal(m16, m0[0])


def test_gptq_lowers_the_output_error_on_correlated_inputs():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((32, 64)).astype(np.float32) * 0.05
    mix = rng.standard_normal((64, 64)) * 0.3 + np.eye(64)
    x = rng.standard_normal((400, 64)) @ mix  # correlated inputs
    u0, s0, _ = quantize_weights(w[None], "int4", 32)
    err0 = np.linalg.norm(x @ (w - dequantize_weights(u0, s0, None, "int4", 32)[0]).T)
    for act_order in (False, True):
        u, s16 = gptq_int4(w, x.T @ x, 32, act_order=act_order)
        q = dequantize_weights(u[None], s16[None], None, "int4", 32)[0]
        assert np.linalg.norm(x @ (w - q).T) < 0.8 * err0
        assert u.max() <= 15 and s16.shape == (32, 2)
    u0, s0, m0 = quantize_weights(w[None], "int4_asym", 64)
    err0 = np.linalg.norm(x @ (w - dequantize_weights(u0, s0, m0, "int4_asym", 64)[0]).T)
    u, s16, m16 = gptq(w, x.T @ x, 64, fmt="int4_asym")
    q = dequantize_weights(u[None], s16[None], m16[None], "int4_asym", 64)[0]
    assert np.linalg.norm(x @ (w - q).T) < 0.8 * err0
    u0, s0, _ = quantize_weights(w[None], "int4_nl", 32)
    err0 = np.linalg.norm(x @ (w - dequantize_weights(u0, s0, None, "int4_nl", 32)[0]).T)
    u, s16, _ = gptq(w, x.T @ x, 32, fmt="int4_nl")
    q = dequantize_weights(u[None], s16[None], None, "int4_nl", 32)[0]
    assert np.linalg.norm(x @ (w - q).T) < 0.8 * err0


@pytest.mark.parametrize("fmt", ["int4", "int4_asym", "int4_nl"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_refine_never_raises_a_rows_error_and_lowers_gptqs(fmt, seed):
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((40, 64)) * rng.uniform(0.01, 0.2, (40, 1))).astype(np.float32)
    x = rng.standard_normal((300, 64)) @ (rng.standard_normal((64, 64)) * 0.4 + np.eye(64))
    x[:, 5] = 0.0  # an input never seen
    H = x.T @ x
    u, s16, m16 = gptq(w, H, 32, fmt=fmt)
    e0 = output_error(w, u, s16, m16, H, fmt)
    u2, s2, m2 = refine(w, u, s16, m16, H, fmt)
    e2 = output_error(w, u2, s2, m2, H, fmt)
    assert np.all(e2 <= e0 * (1 + 1e-12)) and e2.sum() < 0.97 * e0.sum()
    assert u2.dtype == np.uint8 and u2.max() <= 15 and s2.dtype == np.float16 and s2.shape == s16.shape
    assert (m2 is None) == (fmt != "int4_asym")
    assert np.array_equal(u, gptq(w, H, 32, fmt=fmt)[0])  # the inputs are not modified
    # already at a fixed point: a second refine of a refined result changes nothing
    u3, s3, m3 = refine(w, u2, s2, m2, H, fmt, passes=50)
    u4, s4, m4 = refine(w, u3, s3, m3, H, fmt, passes=1)
    assert np.array_equal(u3, u4) and np.array_equal(s3, s4)


def test_refine_with_a_zero_group_keeps_it_zero():
    w = np.random.default_rng(3).standard_normal((8, 64)).astype(np.float32)
    w[:, :32] = 0.0
    u, s16, m16 = gptq(w, np.eye(64), 32)
    u2, s2, _ = refine(w, u, s16, m16, np.eye(64))
    assert np.all(s2[:, 0] == 0) and np.all(u2[:, :32] == 8)


@pytest.fixture(scope="module")
def mixtral_ids():
    m = MoEModel.from_pretrained(builtin.path("mixtral"), progress=False)
    ids = np.array(m.tokenizer.encode(builtin.heldout_text("prose")), np.int64)
    return ids[:2048], ids[4096:4096 + 8 * 128]


@pytest.fixture(scope="module")
def base_logprobs(mixtral_ids, tmp_path_factory):
    """The float32 model's log-probabilities on the evaluation ids (the KLD reference), written once."""
    path = str(tmp_path_factory.mktemp("calibrate") / "base.npz")
    evaluate(MoEModel.from_pretrained(builtin.path("mixtral"), progress=False), mixtral_ids[1], ctx=128,
             save_logprobs=path)
    return path


@pytest.mark.parametrize("fmt", ["int4", "int4_asym", "int4_nl"])
def test_calibrated_model_beats_plain_and_keeps_the_format(mixtral_ids, base_logprobs, tmp_path, fmt):
    cal, ev = mixtral_ids
    plain = MoEModel.from_pretrained(builtin.path("mixtral"), quantize=fmt, progress=False)
    kl_plain = evaluate(plain, ev, ctx=128, kl_base=base_logprobs)["kld_mean"]
    m = MoEModel.from_pretrained(builtin.path("mixtral"), progress=False)
    rep = calibrate_int4(m, cal, ctx=128, format=fmt)
    assert sum(rep.calibrated.values()) > 0
    for i, layer in m.moe_layers.items():
        assert layer.dtype == fmt and layer.nbytes()["routed"] == plain.moe_layers[i].nbytes()["routed"]
    assert m.quantize == fmt and m.group_size == 32
    kl = evaluate(m, ev, ctx=128, kl_base=base_logprobs)["kld_mean"]
    assert kl < kl_plain
    # the calibrated blocks survive save_pretrained / from_pretrained bit for bit
    m.save_pretrained(tmp_path / "cal")
    back = MoEModel.from_pretrained(tmp_path / "cal", progress=False)
    assert np.array_equal(back(ev[:64]), m(ev[:64]))


def test_rare_experts_keep_the_plain_quantizer(mixtral_ids):
    cal, _ = mixtral_ids
    plain = MoEModel.from_pretrained(builtin.path("mixtral"), quantize="int4", progress=False)
    m = MoEModel.from_pretrained(builtin.path("mixtral"), progress=False)
    rep = calibrate_int4(m, cal[:256], ctx=128, min_tokens=10 ** 9)  # every expert "rare"
    assert sum(rep.calibrated.values()) == 0
    for i, layer in m.moe_layers.items():
        assert np.array_equal(layer.experts.w_in, plain.moe_layers[i].experts.w_in)
        assert np.array_equal(layer.experts.w_out, plain.moe_layers[i].experts.w_out)


def test_bad_input(mixtral_ids):
    cal, _ = mixtral_ids
    q = MoEModel.from_pretrained(builtin.path("mixtral"), quantize="int4", progress=False)
    with pytest.raises(ValueError, match="calibrate a float32 / bf16 model"):
        calibrate_int4(q, cal, ctx=128)
    m = MoEModel.from_pretrained(builtin.path("mixtral"), progress=False)
    with pytest.raises(ValueError, match="fewer than one chunk"):
        calibrate_int4(m, cal[:10], ctx=128)
    with pytest.raises(ValueError, match="group_size"):
        calibrate_int4(m, cal, ctx=128, group_size=48)
    with pytest.raises(ValueError, match="format"):
        calibrate_int4(m, cal, ctx=128, format="int8")
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="refine_passes"):
            calibrate_int4(m, cal, ctx=128, refine_passes=bad)


def test_cli_calibrate(tmp_path):
    import json
    import subprocess
    import sys
    text = builtin.heldout_text("prose")
    (tmp_path / "cal.txt").write_text(text[:20000], encoding="utf-8")
    (tmp_path / "ev.txt").write_text(text[40000:60000], encoding="utf-8")
    run = lambda *a: subprocess.run([sys.executable, "-m", "moepy", "eval", "mixtral", "--text", str(tmp_path / "ev.txt"),  # noqa: E731
                                     "--ctx", "128", "--chunks", "8", "--quiet", *a], capture_output=True, text=True)
    assert run("--save-logprobs", str(tmp_path / "b.npz")).returncode == 0
    res = {}
    for name, extra in (("plain", []), ("calibrated", ["--calibrate", str(tmp_path / "cal.txt")])):
        r = run("--quantize", "int4", *extra, "--kl-base", str(tmp_path / "b.npz"), "--json", str(tmp_path / "r.json"))
        assert r.returncode == 0, r.stderr
        res[name] = json.load(open(tmp_path / "r.json"))["kld_mean"]
    assert res["calibrated"] < res["plain"]
    bad = run("--calibrate", str(tmp_path / "cal.txt"))
    assert bad.returncode == 2 and "--quantize int4" in bad.stderr
