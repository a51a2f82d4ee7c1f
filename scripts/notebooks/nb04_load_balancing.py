"""notebooks/04_load_balancing.ipynb: load balancing and collapse on the router traces of the three built-in designs:
balance measures, the auxiliary losses, the auxiliary-loss-free bias balancer replayed on the traces, what the
DeepSeek-V3-style model's trained selection bias does, and what collapse looks like."""

CELLS = [
    ("md", """# 04 · Load balancing and collapse

The three built-in checkpoints were trained (scripts/train_builtin.py) with the three balancing recipes that matter:
`mixtral` (softmax top-2 of 8, Switch's auxiliary loss), `finegrained` (32 fine-grained experts top-4 plus a gated
shared expert, Qwen2-MoE style, auxiliary loss) and `deepseek_v3` (sigmoid scores, 4 groups, top-4 of 32 plus a shared
expert, DeepSeek-V3's auxiliary-loss-free selection bias). Here we record how they route on held-out prose and code
(`moepy.analysis.record_trace`) and ask: how balanced are they, what would the losses say, what does the bias do, and
what does collapse look like?"""),
    ("code", """%matplotlib inline
import numpy as np
import matplotlib.pyplot as plt
import moepy
from moepy import analysis
from moepy.eval import builtin
from moepy.experiments import Table, compare_routing, Scheme, Scoring, layer_route
from moepy.nn import MoEModel

models = {n: MoEModel.from_pretrained(builtin.path(n), progress=False) for n in ("mixtral", "finegrained", "deepseek_v3")}
texts = {d: builtin.heldout_text(d)[:40000] for d in ("prose", "code")}
traces = {n: analysis.record_trace(m, texts, ctx=256) for n, m in models.items()}
for n, t in traces.items():
    print(f"{n:12s} {t.num_tokens:,} tokens, MoE layers {t.layers}, E={t.num_experts(t.layers[0])}, "
          f"k={t.top_k(t.layers[0])}")"""),
    ("md", "## Balance per layer"),
    ("code", """rows = {k: [] for k in ("model", "layer", "cv", "max_mean", "entropy", "dead", "cold")}
for n, t in traces.items():
    b = analysis.balance(t)
    for j, layer in enumerate(b.layers):
        for k, v in (("model", n), ("layer", layer), ("cv", b.cv[j]), ("max_mean", b.max_over_mean[j]),
                     ("entropy", b.entropy_ratio[j]), ("dead", b.dead[j]), ("cold", b.cold[j])):
            rows[k].append(v)
Table(rows, {"cv": "{:.3f}", "max_mean": "{:.2f}", "entropy": "{:.3f}"})"""),
    ("code", """fig, ax = plt.subplots(1, 3, figsize=(14, 3.2))
for a, (n, t) in zip(ax, traces.items()):
    analysis.plot_load_heatmap(t, ax=a)
    a.set_title(n)
fig.tight_layout()"""),
    ("md", """## The auxiliary losses, evaluated on the traces

Switch / Mixtral's load-balancing loss is E · Σ f_i P_i (f_i: the share of tokens that chose expert i, summed over
the k slots; P_i: the mean router probability, sigmoid scores normalised per token), k when perfectly balanced: shown
divided by k, so 1 is balance. DeepSeek-V3's complementary sequence-wise loss is the same per sequence of 256 tokens
(1 when balanced). These are the values a
training step would add on this text (nothing is trained here)."""),
    ("code", """rows = {k: [] for k in ("model", "layer", "switch_aux_over_k", "seq_aux")}
for n, t in traces.items():
    T = t.num_tokens // 256 * 256  # whole sequences of 256 (record_trace keeps each domain's shorter tail)
    for layer in t.layers:
        r = moepy.Routing(t.weights[layer][:T], t.experts[layer][:T], t.scores[layer][:T].astype(np.float32),
                          scoring=models[n].moe_layers[layer].router.scoring)
        rows["model"].append(n); rows["layer"].append(layer)
        rows["switch_aux_over_k"].append(moepy.load_balancing_loss(r) / r.top_k)
        rows["seq_aux"].append(moepy.sequence_aux_loss(r, seq_len=256))
Table(rows, {"switch_aux_over_k": "{:.3f}", "seq_aux": "{:.3f}"})"""),
    ("md", """On this mix of prose and code the bias-balanced `deepseek_v3` is the most even of the three (CV 0.2-0.4, no dead
expert), while both loss-balanced models keep cold experts. Balance is a property of the text as much as of the
model: on prose alone (notebook 03) the same `deepseek_v3` layers sit at CV ≈ 0.9, because its experts specialise
by domain (last section) and its bias was tuned on the training mix."""),
    ("md", """## The auxiliary-loss-free bias balancer, replayed on the traces

DeepSeek-V3 balances without a loss: a per-expert bias b is added to the scores for *selection only*, and after
each batch b_i += γ · sign(mean load − load_i). Replaying it on each model's recorded router scores (logits
recovered from the stored scores) shows how fast it flattens the load, whichever way the model was trained."""),
    ("code", """def logits_of(model, trace, layer):
    s = np.clip(trace.scores[layer].astype(np.float64), 1e-6, 1 - 1e-6)
    sig = model.moe_layers[layer].router.scoring == "sigmoid"
    return (np.log(s / (1 - s)) if sig else np.log(s)).astype(np.float32)

fig, ax = plt.subplots(1, 3, figsize=(14, 3.2), sharey=True)
for a, (n, t) in zip(ax, traces.items()):
    layer = t.layers[-1]
    cfg = models[n].moe_layers[layer].router
    lg = logits_of(models[n], t, layer)
    for gamma in (1e-3, 1e-2, 5e-2):
        bal = moepy.BiasBalancer(t.num_experts(layer), gamma=gamma)
        for s in range(0, len(lg) - 255, 256):
            bal.route(lg[s:s + 256], cfg)
        a.plot(bal.history, label=f"γ = {gamma:g}")
    a.set_title(f"{n}, layer {layer}"); a.set_xlabel("batch (256 tokens)")
    a.grid(alpha=0.3)
ax[0].set_ylabel("max / mean load in the batch"); ax[0].legend()
fig.tight_layout()"""),
    ("md", """The replay starts from a zero bias, so batch 0 is each router's raw affinity (for `deepseek_v3`: its routing with
the trained bias removed, max/mean above 7). The stream is the prose, then the code (from batch ≈ 46): the switch of
domain shows as a jump, and the bias re-adapts. γ trades speed for steadiness: at 0.05 the sign update overshoots and
oscillates, most on the softmax `finegrained` router whose logits are spread wider than the step."""),
    ("md", """## What the DeepSeek-V3-style model's trained selection bias does

The checkpoint carries the bias its training settled on (`e_score_correction_bias`). Experts the router naturally
likes less were pushed up, the popular ones down. A scheme of our own removes it at inference: the router then
selects by raw affinity. The bias never touches the combine weights, so what changes is *which* experts run."""),
    ("code", """ds = models["deepseek_v3"]
t = traces["deepseek_v3"]
fig, ax = plt.subplots(1, len(t.layers), figsize=(14, 3.2))
for a, layer in zip(ax, t.layers):
    bias = ds.moe_layers[layer].selection_bias
    no_bias_load = analysis.load(t)[t.layers.index(layer)]
    a.scatter(bias, t.num_experts(layer) * no_bias_load)
    a.set_xlabel("trained selection bias"); a.set_title(f"layer {layer}")
    a.axhline(1, color="k", ls=":")
ax[0].set_ylabel("load / uniform (with the bias)")
fig.tight_layout()"""),
    ("code", """class NoBias(Scheme):
    name = "selection bias removed"
    def route(self, index, layer, x, logits):
        return layer_route(layer, x, logits, bias=np.zeros(layer.num_experts, np.float32))

ids = np.array(ds.tokenizer.encode(texts["prose"]))
cmp = compare_routing(ds, ids, [NoBias()], ctx=256)
cmp.table.without("tok_s")"""),
    ("md", """## Collapse

A collapsed router sends most tokens to a few experts; the coverage curve (share of slots taken by the N most used
experts) shows it at a glance: the diagonal is perfect balance. Below, the three designs, and the deepseek_v3
model forced to score with softmax instead of the sigmoid it was trained with, which collapses it."""),
    ("code", """from moepy.experiments import applied
with applied(ds, Scoring("softmax")):
    softmax_trace = analysis.record_trace(ds, {"prose": texts["prose"]}, ctx=256)
ax = analysis.plot_coverage({**{n: t for n, t in traces.items()}, "deepseek_v3, softmax scoring": softmax_trace})
b = analysis.balance(softmax_trace)
print("deepseek_v3 with softmax scoring: dead experts per layer", b.dead, "max/mean", b.max_over_mean.round(2))"""),
    ("md", "## Which tokens go where: code against prose, and the text coloured by first-choice expert"),
    ("code", """fig, ax = plt.subplots(1, 2, figsize=(14, 3.2))
analysis.plot_domain_specialization(traces["mixtral"], traces["mixtral"].layers[-1], ax=ax[0])
analysis.plot_domain_specialization(traces["deepseek_v3"], traces["deepseek_v3"].layers[-1], ax=ax[1])
ax[0].set_title("mixtral, last MoE layer"); ax[1].set_title("deepseek_v3, last MoE layer")
fig.tight_layout()"""),
    ("code", """analysis.tokens_html(traces["mixtral"].domain("code"), traces["mixtral"].layers[-1], models["mixtral"].tokenizer,
                     start=100, count=160)"""),
]
