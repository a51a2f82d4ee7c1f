"""notebooks/05_expert_placement.ipynb: expert placement at DeepSeek-V3 and Kimi K2 scale with moepy.sim: EPLB against
round-robin, node-limited routing, all-to-all volume, rebalancing over a stream."""

CELLS = [
    ("md", """# 05 · Expert placement at DeepSeek-V3 and Kimi K2 scale

DeepSeek-V3 routes each token to 8 of 256 experts, Kimi K2 to 8 of 384. Served on many GPUs in many nodes, *where*
each expert lives decides how even the devices' work is and how much crosses the slow inter-node links.
`moepy.sim` replays a routing through a placement without running the model: routing here is synthetic
(`synthetic_routing`: each preset's own router — DeepSeek-V3's group-limited sigmoid routing, Kimi K2's — on random
logits with a Zipf popularity, so a few experts are hot), at one step of 32,768 tokens."""),
    ("code", """%matplotlib inline
import numpy as np
import matplotlib.pyplot as plt
from moepy import configs
from moepy.experiments import Table
from moepy.sim import Link, dispatch, load_from_experts, place_experts, rebalance_stream, synthetic_routing

T, SKEW = 32768, 0.5
models = {name: configs.get(name) for name in ("deepseek-v3", "kimi-k2")}
for name, cfg in models.items():
    r = cfg.router
    print(f"{name}: {cfg.num_experts} experts, top-{r.top_k}, groups {r.n_group} (top {r.topk_group}), "
          f"hidden {cfg.hidden_size} -> {cfg.hidden_size * 2:,} bytes per token in bf16")
routing = {n: synthetic_routing(n, T, skew=SKEW, seed=1, popularity_seed=0) for n in models}
calib = {n: synthetic_routing(n, T, skew=SKEW, seed=2, popularity_seed=0) for n in models}  # fit on another batch
load = {n: load_from_experts(calib[n], models[n].num_experts) for n in models}"""),
    ("md", """## Policies on 64 devices in 8 nodes, with 64 redundant experts

The placement is fitted on one batch's load and measured on another. `eplb` is DeepSeek's hierarchical EPLB (expert
groups packed onto nodes, hot experts replicated within a node, then packed onto its devices); `eplb_global`
replicates and packs over all devices; the node limit M = 4 is DeepSeek-V3's (a token reaches at most 4 nodes)."""),
    ("code", """D, N, REPLICAS, M = 64, 8, 64, 4
policies = ["round_robin", "contiguous", "greedy", "coactivation", "eplb", "eplb_global"]
rows = {k: [] for k in ("model", "policy", "balancedness", "max_mean", "nodes_per_token", "over_M", "inter_GB",
                        "intra_GB", "step_ms")}
reports = {}
for n, cfg in models.items():
    E = cfg.num_experts
    for policy in policies:
        kw = {}
        if policy == "eplb" and cfg.router.n_group > 1:  # DeepSeek-V3's routing groups, packed one per node
            kw["num_groups"] = cfg.router.n_group
        if policy == "coactivation":
            from moepy.sim.synthetic import coactivation_counts
            kw["coactivation"] = coactivation_counts(calib[n], E)
        pl = place_experts(load[n], D, N, REPLICAS, policy, **kw)
        rep = dispatch(routing[n], pl, token_bytes=2 * cfg.hidden_size, node_limit=M)
        reports[n, policy] = (pl, rep)
        for k, v in (("model", n), ("policy", policy), ("balancedness", pl.balancedness(load_from_experts(routing[n], E))),
                     ("max_mean", rep.imbalance), ("nodes_per_token", rep.nodes_per_token_mean),
                     ("over_M", rep.over_node_limit), ("inter_GB", rep.inter_node_bytes / 1e9),
                     ("intra_GB", rep.intra_node_bytes / 1e9), ("step_ms", 1e3 * rep.step_time())):
            rows[k].append(v)
Table(rows, {"balancedness": "{:.3f}", "max_mean": "{:.2f}", "nodes_per_token": "{:.2f}", "over_M": "{:.1%}",
             "inter_GB": "{:.2f}", "intra_GB": "{:.2f}", "step_ms": "{:.2f}"})"""),
    ("md", """Balancedness is the planner's view (mean/max device load when a replicated expert's load splits evenly over
its copies); max/mean is what the dispatch realises, with each token taking the copy on its own device, else on its
node, else any. Round-robin leaves the devices that drew hot experts at 1.7-2.1x the mean. Greedy packing with the 64
replicas on the hottest experts (`greedy` and `eplb_global` are the same algorithm) plans 0.96 but realises 1.1-1.4:
locality pulls tokens onto the nearest copy rather than the least loaded one. Hierarchical `eplb` with DeepSeek-V3's
8 groups packed one per node bounds every token to 4 nodes (none over the limit, 3.98 nodes per token), but it cannot
move load between nodes (1.71); for Kimi K2 (no groups) its within-node replicas are the most even in practice
(1.06). Keeping co-activated experts together (`coactivation`, or simply `contiguous` blocks) cuts the nodes per
token and the inter-node bytes by a quarter, at the price of balance."""),
    ("code", """fig, ax = plt.subplots(1, 2, figsize=(13, 3.3), sharey=True)
for a, n in zip(ax, models):
    for policy in ("round_robin", "eplb_global"):
        rep = reports[n, policy][1]
        a.plot(np.sort(rep.tokens_per_device)[::-1] / rep.mean_tokens, label=policy)
    a.axhline(1, color="k", ls=":"); a.set_title(n); a.set_xlabel("device (sorted by load)"); a.grid(alpha=0.3)
ax[0].set_ylabel("expert slots / mean"); ax[0].legend()
fig.tight_layout()"""),
    ("md", """## Node-limited routing

DeepSeek-V3's router picks the top 4 of 8 expert groups per token before its top-8; with one group per node that
bounds every token's traffic to 4 nodes. Kimi K2's router has a single group: nothing bounds it."""),
    ("code", """fig, ax = plt.subplots(figsize=(7, 3.3))
for n in models:
    h = reports[n, "eplb"][1].nodes_per_token
    ax.bar(np.arange(len(h)) + (0.2 if n == "kimi-k2" else -0.2), h / h.sum(), width=0.4, label=n)
ax.axvline(M + 0.5, color="k", ls=":", label=f"node limit M = {M}")
ax.set_xlabel("nodes a token is sent to (eplb, 8 nodes)"); ax.set_ylabel("share of tokens"); ax.legend()
fig.tight_layout()"""),
    ("md", """## All-to-all volume as the deployment grows

8 devices per node, eplb_global, at least one replica per device (enough that every device holds as many experts). The dispatch moves each token once per destination
device; the estimate is alpha-beta on NVLink within a node and InfiniBand between nodes (150 / 50 GB/s, 5 µs per
message), bounded by the slowest device."""),
    ("code", """rows = {k: [] for k in ("model", "nodes", "devices", "inter_share", "bytes_per_token", "step_ms")}
for n, cfg in models.items():
    for nodes in (1, 2, 4, 8, 16, 32):
        D = 8 * nodes
        replicas = (-cfg.num_experts) % D or D
        pl = place_experts(load[n], D, nodes, replicas, "eplb_global")
        rep = dispatch(routing[n], pl, token_bytes=2 * cfg.hidden_size)
        moved = rep.intra_node_bytes + rep.inter_node_bytes
        for k, v in (("model", n), ("nodes", nodes), ("devices", D),
                     ("inter_share", rep.inter_node_bytes / max(moved, 1)), ("bytes_per_token", moved / T),
                     ("step_ms", 1e3 * rep.step_time(Link()))):
            rows[k].append(v)
scale = Table(rows, {"inter_share": "{:.1%}", "bytes_per_token": "{:,.0f}", "step_ms": "{:.3f}"})
scale"""),
    ("code", """fig, ax = plt.subplots(1, 2, figsize=(12, 3.3))
for n in models:
    sel = scale["model"] == n
    ax[0].plot(scale["nodes"][sel], scale["bytes_per_token"][sel] / 1e3, "o-", label=n)
    ax[1].plot(scale["nodes"][sel], scale["step_ms"][sel], "o-", label=n)
ax[0].set_ylabel("dispatch kB per token"); ax[1].set_ylabel("estimated dispatch + combine (ms)")
for a in ax: a.set_xscale("log", base=2); a.set_xlabel("nodes (8 devices each)"); a.grid(alpha=0.3); a.legend()
fig.tight_layout()"""),
    ("md", """## Rebalancing over a stream whose hot experts drift

Popularity changes while serving. Each step below draws a batch whose hot experts shift a little (a new popularity
every 4 steps); `rebalance_stream` re-runs EPLB every N steps on the load seen since the last rebalance, against a
placement fitted once (on no knowledge: a uniform load), and counts the expert weights moved. Rebalancing on the
last step's load is right three steps in four and wrong right after each drift; rebalancing every 4 steps, in phase
with the drift, always serves the previous period's popularity and is no better than never; in between, every 2
steps is right half the time. Each rebalance moves most experts (tens of GB at DeepSeek-V3's expert size)."""),
    ("code", """E, cfg = 256, models["deepseek-v3"]
stream = [synthetic_routing("deepseek-v3", 8192, skew=SKEW, seed=100 + s, popularity_seed=s // 4) for s in range(16)]
expert_bytes = 3 * cfg.hidden_size * cfg.expert_intermediate_size * 2  # one bf16 expert
fig, ax = plt.subplots(figsize=(7, 3.3))
for every in (1, 2, 4):
    res = rebalance_stream(stream, 64, every=every, num_nodes=8, num_replicas=64, num_experts=E,
                           expert_bytes=expert_bytes, policy="eplb_global")
    ax.plot(res.imbalance, "o-", label=f"rebalance every {every} ({sum(res.bytes_moved) / 1e9:.0f} GB moved)")
ax.plot(res.static_imbalance, "k--", label="static placement")
ax.set_xlabel("step"); ax.set_ylabel("max / mean device load"); ax.legend(); ax.grid(alpha=0.3)
fig.tight_layout()"""),
]
