"""notebooks/03_routing_schemes.ipynb: routing schemes swapped into a trained built-in model, measured in perplexity,
KLD, balance and drops (moepy.experiments.compare_routing), with plots."""

CELLS = [
("md", """# 03 · Routing schemes on a trained model

What changes when a trained MoE model routes differently? `moepy.experiments.compare_routing` runs the model once with
its own routing and once per scheme over the same held-out text, and tabulates perplexity, KL divergence against the
model's own routing, balance, drops and speed. The model is the built-in `deepseek_v3` checkpoint (trained by
`scripts/train_builtin.py`: MLA attention, sigmoid router with 4 groups of 8 experts, top-4 of 32 routed experts plus a
shared expert, the auxiliary-loss-free selection bias); `mixtral` (softmax top-2 of 8) for contrast."""),
("code", """%matplotlib inline
import numpy as np
import matplotlib.pyplot as plt
from moepy.nn import MoEModel
from moepy.eval import builtin
from moepy.experiments import (compare_routing, TopK, Renormalize, Capacity, ExpertChoiceRouting, GroupLimited,
                               OnlineBias, Scoring, Prune)

ds = MoEModel.from_pretrained(builtin.path("deepseek_v3"), progress=False)
mx = MoEModel.from_pretrained(builtin.path("mixtral"), progress=False)
ids = np.array(ds.tokenizer.encode(builtin.heldout_text("prose")))
CTX, CHUNKS = 256, 24          # 24 chunks of 256 tokens; the second half of each is scored
print(ds, mx, sep="\\n")
print(f"{len(ids):,} prose tokens; routers:", ds.moe_layers[1].router)"""),
("md", "## One table: every scheme against the model's own routing"),
("code", """schemes = [TopK(2), TopK(6), Renormalize(False), Capacity(1.0), Capacity(1.25), Capacity(2.0),
           ExpertChoiceRouting(4), GroupLimited(None), GroupLimited(8, 4), OnlineBias(1e-2), OnlineBias(1e-2, "zero"),
           Scoring("softmax"), Prune(0.25, "frequency"), Prune(0.25, "reap")]
res = compare_routing(ds, ids, schemes, ctx=CTX, max_chunks=CHUNKS)
res.table.without("tok_s")   # tokens/s (res["tok_s"]) varies run to run"""),
("md", """Reading it: the trained top-4 is the sweet spot only in one direction (top-2 costs more than top-6 gains);
switching the sigmoid router to softmax — the function it was *not* trained with — costs the most of any
config-only change and collapses the load onto a few experts; dropping the renormalisation changes the scale of every
expert's contribution. Capacity limits drop slots and pay for them in perplexity; expert choice balances perfectly by
construction but looks at later tokens (non-causal) and leaves some tokens without any routed expert.
The online bias buys balance (CV) with perplexity: the model never saw those routings."""),
("code", """t = res.to_dict()
fig, ax = plt.subplots(figsize=(7, 4.5))
ax.scatter(t["cv"], 100 * t["d_ppl"])
for name, x, y in zip(t["scheme"], t["cv"], 100 * t["d_ppl"]):
    ax.annotate(name, (x, y), fontsize=8, xytext=(3, 3), textcoords="offset points")
ax.set_xlabel("CV of the expert load (mean over MoE layers)"); ax.set_ylabel("perplexity change (%)")
ax.set_title("deepseek_v3 built-in: balance against perplexity, per scheme"); ax.grid(alpha=0.3)"""),
("md", "## How many active experts? Both models, k = 1 .. 8"),
("code", """def sweep(model, schemes):
    return compare_routing(model, ids, schemes, ctx=CTX, max_chunks=CHUNKS)

k_ds = sweep(ds, [TopK(k) for k in (1, 2, 3, 5, 6, 8)])
k_mx = sweep(mx, [TopK(k) for k in (1, 3, 4, 8)])
fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
for r, label, trained in ((k_ds, "deepseek_v3 (top-4 of 32)", 4), (k_mx, "mixtral (top-2 of 8)", 2)):
    k = np.array([trained if s == "baseline" else int(s.split("-")[1]) for s in r["scheme"]])
    o = np.argsort(k)
    ax[0].plot(k[o], r["ppl"][o], "o-", label=label); ax[1].plot(k[o], r["kld"][o], "o-", label=label)
ax[0].set_ylabel("perplexity"); ax[1].set_ylabel("KLD vs trained k")
for a in ax: a.set_xlabel("active experts per token"); a.legend(); a.grid(alpha=0.3)"""),
("md", "## Capacity and token dropping (Switch / GShard priority) against dropless"),
("code", """cf = [0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0]
cap = sweep(ds, [Capacity(f, "rank") for f in cf] + [Capacity(f, "token") for f in cf])
fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
for pr in ("rank", "token"):
    rows = [cap.table.row(f"capacity {f:g} ({pr})") for f in cf]
    ax[0].plot(cf, [100 * r["dropped"] for r in rows], "o-", label=f"priority {pr}")
    ax[1].plot(cf, [r["ppl"] for r in rows], "o-", label=f"priority {pr}")
ax[1].axhline(cap.table.row("baseline")["ppl"], color="k", ls=":", label="dropless")
ax[0].set_ylabel("dropped slots (%)"); ax[1].set_ylabel("perplexity")
for a in ax: a.set_xlabel("capacity factor"); a.legend(); a.grid(alpha=0.3)"""),
("md", """## Pruning experts: by frequency or by REAP saliency

REAP (gate weight × norm of the expert's output, averaged over the tokens routed to it) keeps experts that are rarely
picked but matter when they are; frequency keeps the busy ones."""),
("code", """fr = [0.125, 0.25, 0.375, 0.5]
pr = sweep(ds, [Prune(f, by) for f in fr for by in ("frequency", "reap")])
fig, ax = plt.subplots(figsize=(6, 3.8))
for by in ("frequency", "reap"):
    ax.plot([100 * f for f in fr], [pr.table.row(f"prune {f:.0%} ({by})")["ppl"] for f in fr], "o-", label=by)
ax.axhline(pr.table.row("baseline")["ppl"], color="k", ls=":", label="all 32 experts")
ax.set_xlabel("experts pruned per layer (%)"); ax.set_ylabel("perplexity"); ax.legend(); ax.grid(alpha=0.3)
pr.table.without("tok_s")"""),
("md", "## Where the load goes: the model's own routing against the online bias"),
("code", """fig, ax = plt.subplots(1, len(ds.moe_layers), figsize=(12, 3), sharey=True)
for a, layer in zip(ax, ds.moe_layers):
    for name in ("baseline", "online bias 0.01"):
        c = res.counts[name][layer]
        a.bar(np.arange(len(c)) + (0.4 if name != "baseline" else 0), c / c.sum(), width=0.4, label=name)
    a.axhline(1 / len(c), color="k", ls=":")
    a.set_title(f"layer {layer}"); a.set_xlabel("expert")
ax[0].set_ylabel("share of slots"); ax[0].legend()
fig.tight_layout()"""),
]
