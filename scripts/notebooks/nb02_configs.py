"""notebooks/02_configs.ipynb: the seed systems' configurations — MoE history tables of parameters,
activation ratios, experts, granularity and memory, all computed from moepy.configs presets."""

CELLS = [
    ("md", """# The seed systems' configurations

Every preset of `moepy.configs` carries the published hyper-parameters of one system (its family's module in
`moepy/families` cites the source). Everything below is **computed** from those hyper-parameters by
`ModelConfig.count_params()`, `memory_bytes(format)` and `expert_combinations`; nothing is typed in but prose.
The year is the first year the preset's docstring cites (its paper, blog post or model card), or its family's.

Conventions: *total* and *active* count the input embedding and the output head (once if tied); *active* is what
one text token uses (attention, dense layers, shared experts, its top-k routed experts, router, norms); memory
is the weights only, in GB (10⁹ bytes), scales of the quantized formats included, norms and router in bf16."""),
    ("code", """%matplotlib inline
import re
import numpy as np, matplotlib.pyplot as plt, moepy
from moepy import configs
from moepy.families import registry
from moepy.configs.accounting import fmt_count, fmt_combos


def year(name, cfg):
    fam = registry.get(cfg.family)
    for text in (fam.presets[name].__doc__ or '', fam.description):
        found = re.findall(r'\\b(20[0-3]\\d)\\b', text)
        if found:
            return int(found[0])
    return None


def show(head, rows, left=(0,)):
    \"\"\"A plain-text table: columns in `left` left-aligned, the others right-aligned.\"\"\"
    rows = [[str(c) for c in r] for r in rows]
    w = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    fmt = lambda cells: '  '.join(c.ljust(w[i]) if i in left else c.rjust(w[i]) for i, c in enumerate(cells))
    print('\\n'.join([fmt(head), '  '.join('-' * x for x in w)] + [fmt(r) for r in rows]))


presets = {n: configs.get(n) for n in configs.names()}
order = sorted(presets, key=lambda n: (year(n, presets[n]), configs.names().index(n)))
counts = {n: presets[n].count_params() for n in order}
print(len(order), 'presets from', year(order[0], presets[order[0]]), 'to', year(order[-1], presets[order[-1]]))"""),
    ("md", """## Parameters and activation ratios

The share of the weights one token uses fell from about a quarter (Mixtral, DBRX, Grok-1) to a few percent
(DeepSeek-V3, Kimi K2, Llama 4 Maverick, gpt-oss-120b); the encoder-decoder designs of 2020–2021 (GShard,
Switch-C) sit lowest, with thousands of experts and top-1 or top-2 routing. C(E, k) is the number of distinct
expert sets a token can take in one MoE layer."""),
    ("code", """rows = []
for n in order:
    c, p = presets[n], counts[n]
    rows.append((n, year(n, c), c.family, f'{len(c.moe_layers)}/{c.num_layers}', fmt_count(p.total),
                 fmt_count(p.active), f'{100 * p.activation_ratio:.1f}', c.num_experts, c.top_k,
                 c.num_shared_experts, fmt_combos(c.expert_combinations)))
show(('model', 'year', 'family', 'MoE layers', 'total', 'active', 'active %', 'experts E', 'top-k', 'shared',
      'C(E,k)'), rows, left=(0, 2))"""),
    ("md", """Vendors count "active" differently (Qwen without embeddings, DeepSeek and gpt-oss without the input
embedding table, which is a lookup): the same architecture under each convention."""),
    ("code", """show(('model', 'total', 'total non-emb.', 'active', 'active non-emb.', 'active w/o input emb.', 'routed experts %'),
     [(n, fmt_count(p.total), fmt_count(p.total_non_embedding), fmt_count(p.active),
       fmt_count(p.active_non_embedding), fmt_count(p.active_without_input_embedding),
       f'{100 * p.routed_experts / p.total:.1f}') for n, p in counts.items()])"""),
    ("md", """## Experts: width and granularity

Fine-grained designs (DeepSeekMoE, Qwen-MoE, OLMoE, Qwen3) split the FFN into many narrow experts and route
to more of them. *I/H* is the expert width over the model width; *granularity* is the dense FFN width over the
expert width, where the model has dense FFN layers to compare with (DeepSeekMoE's m); *routed per token* is
k·I, the expert width a token passes through in one MoE layer (shared experts not included)."""),
    ("code", """rows = []
for n in order:
    c = presets[n]
    I, H, D = c.expert_intermediate_size, c.hidden_size, c.dense_intermediate_size
    rows.append((n, H, I, f'{I / H:.2f}', D or '-', f'{D / I:.1f}' if D else '-', c.top_k * I,
                 c.shared_intermediate_size or '-', 'GLU' if c.expert_glu else '2-matrix'))
show(('model', 'H', 'expert I', 'I/H', 'dense FFN', 'granularity', 'routed per token k*I', 'shared width', 'experts'),
     rows)"""),
    ("md", """## Memory of the weights per format

From the tensor list of each configuration (`cfg.tensors()`): bf16; fp8 with one fp32 scale per 128×128 block
(DeepSeek-V3's checkpoints); int8 and int4 with one fp16 scale per 32 weights (ggml's Q8_0 / Q4_0); and MXFP4
on the routed experts only, the rest bf16 (gpt-oss's published checkpoints). *Active bf16 GB* is the weights
one token reads (2 bytes per active parameter): what bounds decoding speed by memory bandwidth."""),
    ("code", """formats = ['bf16', 'fp8', 'int8', 'int4']
mem = {n: {f: presets[n].memory_bytes(f) / 1e9 for f in formats} for n in order}
for n in order:
    mem[n]['mxfp4 experts'] = presets[n].memory_bytes('mxfp4', experts_only=True) / 1e9
cols = formats + ['mxfp4 experts']
show(['model'] + [f'{f} GB' for f in cols] + ['active bf16 GB'],
     [[n] + [f'{mem[n][f]:,.1f}' for f in cols] + [f'{2 * counts[n].active / 1e9:,.1f}'] for n in order])"""),
    ("md", "## Total against active parameters"),
    ("code", """years = np.array([year(n, presets[n]) for n in order])
tot = np.array([counts[n].total for n in order], float)
act = np.array([counts[n].active for n in order], float)
fig, ax = plt.subplots(figsize=(10, 7.5))
sc = ax.scatter(tot, act, c=years, cmap='viridis', s=40, zorder=3)
# one label per group of points closer than 12% in both coordinates; labels alternate right and left
groups = []
for i in np.argsort(tot, kind='stable'):
    near = [g for g in groups if abs(np.log(tot[g[0]] / tot[i])) < 0.12 and abs(np.log(act[g[0]] / act[i])) < 0.12]
    (near[0].append(i) if near else groups.append([i]))
for j, g in enumerate(sorted(groups, key=lambda g: act[g[0]])):
    right = j % 2 == 0
    ax.annotate('\\n'.join(order[i] for i in g), (tot[g[0]], act[g[0]]), textcoords='offset points',
                xytext=(6 if right else -6, 0), ha='left' if right else 'right', va='center', fontsize=7)
for r in (0.01, 0.1, 1.0):
    xs = np.array([tot.min() / 2, tot.max() * 2])
    ax.plot(xs, r * xs, 'k:', lw=0.7)
    ax.annotate(f'{r:.0%} active', (xs[1] / 3, r * xs[1] / 3), fontsize=7, color='gray')
ax.set_xscale('log'); ax.set_yscale('log')
ax.set_xlabel('total parameters'); ax.set_ylabel('active parameters per token')
fig.colorbar(sc, label='year')
ax.set_title('MoE systems: total vs active parameters (moepy.configs presets)')
fig.tight_layout()
plt.show()"""),
    ("md", "## Weight memory per format"),
    ("code", """fig, ax = plt.subplots(figsize=(9, 7))
y = np.arange(len(order))
h = 0.8 / len(formats)
for j, f in enumerate(formats):
    ax.barh(y + (j - (len(formats) - 1) / 2) * h, [mem[n][f] for n in order], height=h, label=f)
ax.set_yticks(y, order, fontsize=8); ax.invert_yaxis()
ax.set_xscale('log'); ax.set_xlabel('weights, GB (1e9 bytes)')
for gb in (80, 640):
    ax.axvline(gb, color='gray', lw=0.7, ls='--')
    ax.annotate(f' {gb} GB', (gb, -0.6), fontsize=7, color='gray', va='bottom')
ax.legend(loc='lower right')
fig.tight_layout()
plt.show()"""),
    ("md", """## The same designs, scaled down

`cfg.scaled()` keeps a design's structure (attention kind, shared experts, router, which layers are MoE) at a
size that runs in a test; `moepy.MoEModel.from_config(cfg.scaled())` builds it with random weights."""),
    ("code", """show(('model', 'scaled total', 'scaled active', 'E', 'top-k', 'layers'),
     [(n, fmt_count(s.count_params().total), fmt_count(s.count_params().active), s.num_experts, s.top_k, s.num_layers)
      for n, s in ((n, presets[n].scaled()) for n in order)])"""),
]
