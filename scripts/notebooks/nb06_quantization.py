"""notebooks/06_quantization.ipynb: what INT8 / INT4 / int4_nl / calibrated INT4 experts cost the three built-ins, and how much of
that cost is the experts' own error and how much the routers choosing other experts (moepy.eval.routing_drift)."""

CELLS = [
    ("md", """# 06 · What quantized experts cost, and where the cost comes from

Quantizing a MoE model's experts changes it in two ways. Each expert computes a slightly different function; and,
because the hidden states now differ a little, the routers of later layers pick other experts for some tokens.
`moepy.eval.routing_drift` separates the two: it scores the quantized model against the float32 one (KL divergence
of the next-token distributions, llama-perplexity's convention), once as it is and once with the float model's
routing replayed into every MoE layer, which leaves only the experts' own error.

Formats: `int8` (8.5 bits per weight, llama.cpp's Q8_0 layout), `int4` (4.5 bits, Q4_0's), `int4_nl` (4.5 bits,
IQ4_NL's 16 non-uniform levels, denser near zero), and `int4_nl` calibrated
(`moepy.moe.calibrate.calibrate_int4`: GPTQ on each expert's own routed tokens, then a refinement of the codes and
scales; the same format and kernels). Calibration text: the first halves of the held-out prose and code; evaluation:
six chunks of 256 tokens from each second half."""),
    ("code", """%matplotlib inline
import numpy as np
import matplotlib.pyplot as plt
from moepy.eval import builtin, routing_drift
from moepy.experiments import Table
from moepy.moe.calibrate import calibrate_int4
from moepy.nn import MoEModel

names = ("mixtral", "finegrained", "deepseek_v3")
load = lambda n, **kw: MoEModel.from_pretrained(builtin.path(n), dtype="float32", progress=False, **kw)
ref = {n: load(n) for n in names}

def halves(n):
    ids = {d: np.array(ref[n].tokenizer.encode(builtin.heldout_text(d)), np.int64) for d in ("prose", "code")}
    cal = np.concatenate([v[: len(v) // 2] for v in ids.values()])
    ev = np.concatenate([v[len(v) // 2:][: 6 * 256] for v in ids.values()])
    return cal, ev

drift = {}
for n in names:
    cal, ev = halves(n)
    variants = {"int8": load(n, quantize="int8"), "int4": load(n, quantize="int4"),
                "int4_nl": load(n, quantize="int4_nl")}
    variants["int4_nl calibrated"] = load(n)
    report = calibrate_int4(variants["int4_nl calibrated"], cal, ctx=256, format="int4_nl")
    for v, m in variants.items():
        drift[n, v] = routing_drift(ref[n], m, ev, ctx=256)
    print(f"{n:12s} {report}")
VARIANTS = list(variants)"""),
    ("code", """rows = {k: [] for k in ("model", "experts", "bits", "kld", "experts_only", "routing_share", "same_top")}
for (n, v), d in drift.items():
    for k, x in (("model", n), ("experts", v), ("bits", 8.5 if v == "int8" else 4.5), ("kld", d["kld_mean"]),
                 ("experts_only", d["kld_mean_replayed"]), ("routing_share", d["routing_share"]),
                 ("same_top", d["same_top_p"])):
        rows[k].append(x)
Table(rows, {"kld": "{:.4f}", "experts_only": "{:.4f}", "routing_share": "{:.0%}", "same_top": "{:.1%}"})"""),
    ("md", """`kld`: the quantized model as it is; `experts_only`: with the float model's routing replayed (same experts, same
combine weights); `routing_share` = 1 − experts_only / kld, the part the routers' changed choices cause; `same_top`:
how often both models agree on the most likely next token."""),
    ("code", """fig, ax = plt.subplots(1, 3, figsize=(15, 3.6))
for a, n in zip(ax, names):
    vs = [v for (m, v) in drift if m == n]
    own = np.array([drift[n, v]["kld_mean_replayed"] for v in vs])
    total = np.array([drift[n, v]["kld_mean"] for v in vs])
    a.bar(vs, own, label="the experts' own error")
    a.bar(vs, total - own, bottom=own, label="the routers' changed choices")
    a.set_title(n); a.set_ylabel("KLD from float32"); a.grid(axis="y", alpha=0.3)
    a.tick_params(axis="x", labelrotation=25, labelsize=8)
    a.set_ylim(0, 1.35 * total.max())  # room for the legend above the bars
ax[2].legend(loc="upper right", fontsize=9)
fig.tight_layout()"""),
    ("md", """At the same 4.5 bits, int4_nl's levels (denser where most weights are) lower both parts a little, and calibration
roughly halves the experts' own error, but it leaves much of the routing part:
GPTQ minimises each matrix's own output error, and nothing in that objective sees which later router a small change
of the hidden state tips over. The routing share therefore grows with calibration, and it is largest for the
DeepSeek-V3-style model (sigmoid scores, group-limited top-4 of 32), where more than half of the INT4 divergence comes
from tokens sent to other experts. Even INT8, whose absolute cost is tiny, owes a large share of it to the routers.

## Which layers reroute

Per MoE layer, the share of tokens whose set of experts differs from the float model's:"""),
    ("code", """fig, ax = plt.subplots(1, 3, figsize=(14, 3.2), sharey=True)
for a, n in zip(ax, names):
    for v in VARIANTS:
        layers = drift[n, v]["layers"]
        a.plot(list(layers), [100 * x["changed_set_rate"] for x in layers.values()], "o-", label=v)
    a.set_title(n); a.set_xlabel("MoE layer"); a.set_xticks(list(layers)); a.grid(alpha=0.3)
ax[0].set_ylabel("tokens with another expert set (%)"); ax[0].legend()
fig.tight_layout()
for n in names:
    print(n, {v: [round(100 * x["changed_set_rate"], 1) for x in drift[n, v]["layers"].values()]
              for v in VARIANTS})"""),
    ("md", """The first MoE layer never reroutes: its input comes from float embeddings and attention, untouched by the quantized
experts. From there the changes accumulate with depth: 3-8% of the tokens take another expert set per layer in INT4,
2-6% after calibration, 0.5-1.5% in INT8. This is the limit a layer-wise
quantizer meets, and the figure to watch when comparing quantization schemes on a MoE model (the same measure applies
to any changed copy with the same experts: pruned, merged, or run with other kernels)."""),
]
