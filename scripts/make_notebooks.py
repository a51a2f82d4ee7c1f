"""Build and execute the notebooks in notebooks/ without Jupyter: each cell runs in one shared
namespace, its printed output and the repr of its last expression become the cell's outputs.

    python scripts/make_notebooks.py          # rewrites notebooks/*.ipynb with fresh outputs
"""
import ast
import contextlib
import io
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "notebooks")

TOUR = [
    ("md", "# moepy tour\n\nRouters of every family, balance measures, an MoE layer, a Hugging Face block, "
           "quantized experts and model accounting — all on CPU, from NumPy arrays."),
    ("code", "import numpy as np, moepy\nmoepy.build_info()"),
    ("md", "## Routing: the same logits through Mixtral's and DeepSeek-V3's routers"),
    ("code", "rng = np.random.default_rng(0)\nlogits = rng.standard_normal((4096, 256)).astype(np.float32)\n"
             "ds = moepy.route(logits, moepy.RouterConfig.deepseek_v3())\n"
             "mx = moepy.route(logits[:, :8], moepy.RouterConfig.mixtral(8, 2))\n"
             "print(ds.experts[0], ds.weights[0].round(3), ds.weights[0].sum())\n"
             "print(mx.experts[0], mx.weights[0].round(3))"),
    ("code", "for name, r in [('deepseek-v3', ds), ('mixtral', mx)]:\n"
             "    s = moepy.balance_stats(r)\n"
             "    print(f'{name:12s} cv={s.cv:.3f} max/mean={s.max_over_mean:.2f} dead={s.dead_experts} aux={s.aux_loss:.3f}')"),
    ("md", "## Token dropping: Switch top-1 with a capacity, and expert choice"),
    ("code", "sw = moepy.route(logits[:, :8] + np.array([2, 0, 0, 0, 0, 0, 0, 0], np.float32),\n"
             "                  moepy.RouterConfig.switch(8, capacity_factor=1.0))\n"
             "print('capacity', sw.capacity, 'drop rate', moepy.balance_stats(sw).drop_rate)\n"
             "ec = moepy.expert_choice(logits[:, :8], capacity_factor=2.0)\n"
             "print('expert choice: tokens taken by no expert:', int((ec.coverage == 0).sum()))"),
    ("md", "## The auxiliary-loss-free bias (DeepSeek-V3) over a stream of batches"),
    ("code", "cfg = moepy.RouterConfig.deepseek_v3()\nskew = np.zeros(256, np.float32); skew[:16] = 0.5\n"
             "bal = moepy.BiasBalancer(256, gamma=0.01)\n"
             "for _ in range(50):\n"
             "    bal.route(rng.standard_normal((2048, 256)).astype(np.float32) + skew, cfg)\n"
             "print('max/mean load per batch:', [round(h, 2) for h in bal.history[::10]])"),
    ("md", "## An MoE layer: routed + shared experts in one C call, fp32 / bf16 / INT8 / INT4"),
    ("code", "layer = moepy.MoELayer.random(moepy.RouterConfig.deepseek_v3(64, 6, n_group=8, topk_group=4), 512, 256,\n"
             "                              shared_intermediate_size=512, selection_bias=True, seed=0)\n"
             "x = rng.standard_normal((64, 512)).astype(np.float32)\n"
             "y = layer(x)\n"
             "for fmt in ['int8', 'int4']:\n"
             "    q = layer.quantize(fmt, 32)\n"
             "    err = np.sqrt(((q(x) - y) ** 2).mean() / (y ** 2).mean())\n"
             "    print(fmt, 'routed bytes', q.nbytes()['routed'], 'vs fp32', layer.nbytes()['routed'], f'rel. error {err:.3%}')"),
    ("md", "## Model accounting"),
    ("code", "cfg = moepy.configs.get('deepseek-v3')\np = cfg.count_params()\n"
             "print(f'total {p.total/1e9:.1f}B active {p.active/1e9:.2f}B  int4 weights {cfg.memory_bytes(\"int4\")/1e9:.0f} GB')\n"
             "print('expert combinations per layer:', cfg.expert_combinations)"),
]


def run_cells(cells):
    ns: dict = {}
    out = []
    for n, (kind, src) in enumerate(cells):
        if kind == "md":
            out.append({"cell_type": "markdown", "metadata": {}, "source": src.splitlines(True)})
            continue
        tree = ast.parse(src)
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            exec(compile(tree, f"<cell {n}>", "exec"), ns)
            value = eval(compile(ast.Expression(last.value), f"<cell {n}>", "eval"), ns) if last else None
        outputs = []
        if buf.getvalue():
            outputs.append({"output_type": "stream", "name": "stdout", "text": buf.getvalue().splitlines(True)})
        if value is not None:
            outputs.append({"output_type": "execute_result", "execution_count": n, "metadata": {},
                            "data": {"text/plain": repr(value).splitlines(True)}})
        out.append({"cell_type": "code", "execution_count": n, "metadata": {}, "outputs": outputs,
                    "source": src.splitlines(True)})
    return out


def write(name, cells):
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                          "language": "python"}},
          "cells": run_cells(cells)}
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, name), "w") as f:
        json.dump(nb, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    write("01_tour.ipynb", TOUR)
    print("wrote", os.path.join(OUT, "01_tour.ipynb"), file=sys.stderr)
