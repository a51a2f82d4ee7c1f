"""notebooks/01_tour.ipynb: routers, balance, token dropping, an MoE layer, a Hugging Face block, quantized
experts, model accounting, and a whole built-in model (generation, perplexity, expert load)."""

CELLS = [
    ("md", """# moepy tour

Routers of every family, balance measures, an MoE layer, a Hugging Face block loaded from checkpoint tensors,
quantized experts, model accounting, and a whole (tiny, built-in) model that generates text and is evaluated —
all on CPU, from NumPy arrays."""),
    ("code", """%matplotlib inline
import numpy as np, matplotlib.pyplot as plt, moepy
print(moepy.__version__)
# moepy.build_info() tells how this build runs (OpenMP, threads, the kernels' ISA, CPU features); its keys:
sorted(moepy.build_info())"""),
    ("md", "## Routing: the same logits through Mixtral's and DeepSeek-V3's routers"),
    ("code", """rng = np.random.default_rng(0)
logits = rng.standard_normal((4096, 256)).astype(np.float32)
ds = moepy.route(logits, moepy.RouterConfig.deepseek_v3())
mx = moepy.route(logits[:, :8], moepy.RouterConfig.mixtral(8, 2))
print(ds.experts[0], ds.weights[0].round(3), ds.weights[0].sum())
print(mx.experts[0], mx.weights[0].round(3))"""),
    ("code", """for name, r in [('deepseek-v3', ds), ('mixtral', mx)]:
    s = moepy.balance_stats(r)
    print(f'{name:12s} cv={s.cv:.3f} max/mean={s.max_over_mean:.2f} dead={s.dead_experts} aux={s.aux_loss:.3f}')"""),
    ("md", "## Token dropping: Switch top-1 with a capacity, and expert choice"),
    ("code", """sw = moepy.route(logits[:, :8] + np.array([2, 0, 0, 0, 0, 0, 0, 0], np.float32),
                 moepy.RouterConfig.switch(8, capacity_factor=1.0))
print('capacity', sw.capacity, 'drop rate', moepy.balance_stats(sw).drop_rate)
ec = moepy.expert_choice(logits[:, :8], capacity_factor=2.0)
print('expert choice: tokens taken by no expert:', int((ec.coverage == 0).sum()))"""),
    ("md", "## The auxiliary-loss-free bias (DeepSeek-V3) over a stream of batches"),
    ("code", """cfg = moepy.RouterConfig.deepseek_v3()
skew = np.zeros(256, np.float32); skew[:16] = 0.5
bal = moepy.BiasBalancer(256, gamma=0.01)
for _ in range(50):
    bal.route(rng.standard_normal((2048, 256)).astype(np.float32) + skew, cfg)
print('max/mean load per batch:', [round(h, 2) for h in bal.history[::10]])"""),
    ("md", "## An MoE layer: routed + shared experts in one C call, fp32 / bf16 / INT8 / INT4"),
    ("code", """layer = moepy.MoELayer.random(moepy.RouterConfig.deepseek_v3(64, 6, n_group=8, topk_group=4), 512, 256,
                             shared_intermediate_size=512, selection_bias=True, seed=0)
x = rng.standard_normal((64, 512)).astype(np.float32)
y = layer(x)
for fmt in ['int8', 'int4']:
    q = layer.quantize(fmt, 32)
    err = np.sqrt(((q(x) - y) ** 2).mean() / (y ** 2).mean())
    print(fmt, 'routed bytes', q.nbytes()['routed'], 'vs fp32', layer.nbytes()['routed'], f'rel. error {err:.3%}')"""),
    ("md", """## A Hugging Face block from checkpoint tensors

`MoELayer.from_hf(config, tensors, layer_index)` builds one MoE block from a config.json dict and a mapping of
checkpoint names to arrays (a safetensors file, a `moepy.io.open_checkpoint` directory, or plain NumPy arrays).
Here: a tiny Mixtral config, its layer 0 under the Hub's names, and the block checked against the Mixtral
math written out in NumPy (softmax over the 8 router logits, top-2, renormalised, SwiGLU experts)."""),
    ("code", """E, K, H, I = 8, 2, 64, 128
config = {'model_type': 'mixtral', 'hidden_size': H, 'intermediate_size': I, 'num_local_experts': E,
          'num_experts_per_tok': K, 'num_hidden_layers': 1, 'num_attention_heads': 4, 'vocab_size': 100}
w = np.random.default_rng(1)
p = 'model.layers.0.block_sparse_moe.'
tensors = {p + 'gate.weight': w.standard_normal((E, H)).astype(np.float32)}
for e in range(E):
    tensors[p + f'experts.{e}.w1.weight'] = (w.standard_normal((I, H)) / 8).astype(np.float32)  # gate
    tensors[p + f'experts.{e}.w3.weight'] = (w.standard_normal((I, H)) / 8).astype(np.float32)  # up
    tensors[p + f'experts.{e}.w2.weight'] = (w.standard_normal((H, I)) / 11).astype(np.float32)  # down
block = moepy.MoELayer.from_hf(config, tensors, 0)
print(block)

xs = w.standard_normal((16, H)).astype(np.float32)
z = xs @ tensors[p + 'gate.weight'].T
probs = np.exp(z - z.max(1, keepdims=True)); probs /= probs.sum(1, keepdims=True)
top = np.argsort(-probs, 1, kind='stable')[:, :K]
ref = np.zeros_like(xs)
for t in range(len(xs)):
    g = probs[t, top[t]] / probs[t, top[t]].sum()
    for e, ge in zip(top[t], g):
        a = xs[t] @ tensors[p + f'experts.{e}.w1.weight'].T
        u = xs[t] @ tensors[p + f'experts.{e}.w3.weight'].T
        ref[t] += ge * ((a / (1 + np.exp(-a)) * u) @ tensors[p + f'experts.{e}.w2.weight'].T)
err = np.abs(block(xs) - ref).max() / np.abs(ref).max()
print('moepy matches the NumPy Mixtral block to float32 rounding (max error / max |y| < 1e-5):', err < 1e-5)"""),
    ("md", "## Model accounting"),
    ("code", """cfg = moepy.configs.get('deepseek-v3')
p = cfg.count_params()
print(f'total {p.total/1e9:.1f}B active {p.active/1e9:.2f}B  int4 weights {cfg.memory_bytes("int4")/1e9:.0f} GB')
print('expert combinations per layer:', cfg.expert_combinations)"""),
    ("md", """## A whole model: the built-in checkpoint

moepy ships tiny trained checkpoints (`moepy.eval.builtin.names()`); the default is a 4-layer DeepSeek-V3-style
decoder (MLA attention, 32 routed experts top-4 + 1 shared, sigmoid routing with group limits) trained on
Bible prose and Python code. `MoEModel.from_pretrained` reads any checkpoint directory (config.json +
safetensors + tokenizer.json) or a GGUF file."""),
    ("code", """from moepy.eval import builtin
print(builtin.names())
model = moepy.MoEModel.from_pretrained(builtin.path(), progress=False)
print(model)
print(model.generate(prompt='In the beginning', max_new_tokens=20))   # greedy: temperature 0"""),
    ("md", """Perplexity on the held-out prose, llama.cpp's convention (chunks of `ctx` tokens, the second half of each
chunk scored), on the first 8 chunks only to stay fast; `python -m moepy eval` runs the whole text."""),
    ("code", """tok = model.tokenizer
ids = np.array(tok.encode(builtin.heldout_text('prose')))
rep = moepy.eval.evaluate(model, ids, ctx=256, max_chunks=8, bos=tok.bos_token_id if tok.adds_bos else None)
print(f"perplexity {rep['perplexity']:.3f} ± {rep['perplexity_stderr']:.3f} over {rep['tokens_scored']} tokens "
      f"(unigram baseline {rep['baseline_unigram_perplexity']:.1f})")
for l in rep['layers']:
    print(f"layer {l['layer']}: cv {l['cv']:.3f}  max/mean {l['max_over_mean']:.2f}  dead {l['dead']}")"""),
    ("md", "The routing itself: `model(ids, return_routing=True)` gives every MoE layer's `Routing`; the load of each expert, per layer:"),
    ("code", """logits, routing = model(ids[:1024], return_routing=True)
fig, axes = plt.subplots(1, len(routing), figsize=(12, 2.8), sharey=True)
for ax, (i, r) in zip(axes, routing.items()):
    load = moepy.tokens_per_expert(r) / r.experts.size
    ax.bar(np.arange(len(load)), load)
    ax.axhline(1 / len(load), color='k', lw=0.8, ls='--')
    ax.set_title(f'layer {i}'); ax.set_xlabel('expert')
axes[0].set_ylabel('share of assignments')
fig.tight_layout()
plt.show()"""),
]
