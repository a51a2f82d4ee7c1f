"""Perplexity of the same checkpoint in moepy, transformers and llama.cpp (llama-perplexity on the F32 GGUF
conversion), on identical token ids, in llama-perplexity's convention (moepy/eval/perplexity.py).

    LLAMACPP_BIN=$(benchmarks/build_llamacpp.sh)     # llama-perplexity & co. (cached in build/llamacpp/)
    nice -n 19 python benchmarks/bench_perplexity_peers.py [CHECKPOINT_DIR ...] [--ctx 512] [--domains prose code]

Default checkpoints: moepy/data/builtin/*/ if any, else /work/scratch/builtin/*/. Per checkpoint and domain:
- the held-out text moepy/data/heldout/DOMAIN.txt is tokenized ONCE with the checkpoint's tokenizer.json (the
  `tokenizers` package), BOS first when tokenizer_config.json says add_bos_token: exactly the list
  llama-perplexity builds (common_tokenize(text, add_special=true)); each chunk's first token is then BOS in all
  three engines (llama-perplexity replaces it when the GGUF vocab says add_bos; moepy when the tokenizer adds BOS).
- moepy: `python -m moepy eval CKPT --tokens ids.npy --ctx 512 --dtype float32 --threads 1` (--tokens, not --text:
  --text encodes without the leading BOS, which shifts every chunk by one token against llama-perplexity).
- transformers: float32, eager attention, the same chunks, computed here.
- llama.cpp on the same ids: llama-perplexity only takes text, but its --kl-divergence mode evaluates the token
  ids stored in a --kl-divergence-base file. This script writes that file (llama's format: the ids, then
  transformers' log-probs quantized as llama does) and runs
  `llama-perplexity -m f32.gguf --kl-divergence-base FILE --kl-divergence -c 512 -b 512 -t 1 -ctk f32 -ctv f32`:
  its "Mean PPL(Q)" is llama.cpp's perplexity of these ids (its KLD is against transformers).
- llama.cpp on the text (`llama-perplexity -f DOMAIN.txt`): its own tokenization; the ids it used (saved with
  --kl-divergence-base) are compared with ours and the first mismatch reported.
Conversion: the tree's convert_hf_to_gguf.py --outtype f32, with the shim of tests/io/test_llamacpp_converter.py
(the tiny BPE pre-tokenizer is not in its table: answer "gpt-2"), and, as the tiny checkpoints have no tokenizer.model,
a sentencepiece-free path for the llama-family vocab (it imports sentencepiece before looking for the file). JSON: benchmarks/results/perplexity_peers_DATE.json.
"""
from __future__ import annotations

import argparse
import datetime
import glob
import json
import math
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
CONVERT = r'''
import sys
root = sys.argv.pop(1)
sys.path[:0] = [root, root + "/gguf-py"]
import convert_hf_to_gguf as conv
from conversion import base
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"
sp = base.TextModel._set_vocab_sentencepiece  # imports sentencepiece before it looks for tokenizer.model
def no_sp(self, *a, **k):
    if not (self.dir_model / "tokenizer.model").is_file():
        raise FileNotFoundError("no tokenizer.model")
    return sp(self, *a, **k)
base.TextModel._set_vocab_sentencepiece = no_sp
sys.argv[0] = root + "/convert_hf_to_gguf.py"
conv.main()
'''
NICE = ["nice", "-n", "19"]


def default_checkpoints():
    for pat in (os.path.join(ROOT, "moepy/data/builtin/*/"), "/work/scratch/builtin/*/"):
        found = sorted(d for d in glob.glob(pat) if os.path.isfile(os.path.join(d, "config.json")))
        if found:
            return found
    return []


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout.strip()


def token_ids(ckpt, text):
    """The checkpoint's tokenization of text, BOS first when the tokenizer adds it; (ids, bos id or None)."""
    from moepy.nn.tokenizer import Tokenizer
    tok = Tokenizer.from_dir(ckpt)
    return np.asarray(tok.encode(text, add_special_tokens=True), np.int64), (tok.bos_token_id if tok.adds_bos
                                                                            else None)


def chunked(ids, ctx, bos):
    from moepy.eval.perplexity import chunks
    return chunks(ids, ctx, bos)


def transformers_run(ckpt, chunks_, ctx):
    """Per-token NLL (float64) and the float32 logits of the scored positions, chunk by chunk."""
    import torch
    import transformers
    torch.set_num_threads(1)
    model = transformers.AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    pos = np.arange(ctx // 2, ctx - 1)
    nll, logits = [], []
    with torch.no_grad():
        for c in chunks_:
            lg = model(torch.from_numpy(c[None])).logits[0, pos].float()
            lp = torch.log_softmax(lg.double(), dim=-1).numpy()
            nll.append(-lp[np.arange(len(pos)), c[pos + 1]])
            logits.append(lg.numpy())
    return np.concatenate(nll), logits


def write_llama_logits(path, chunks_, logits, ctx):
    """A llama-perplexity --kl-divergence-base file: '_logits_', n_ctx, n_vocab, n_chunk, the ids, then per scored
    position [scale, min_log_prob] (float32) and the log-probs quantized to uint16 as its log_softmax does."""
    n_vocab = logits[0].shape[1]
    nv = 2 * ((n_vocab + 1) // 2) + 4
    with open(path, "wb") as f:
        f.write(b"_logits_")
        np.array([ctx], np.uint32).tofile(f)
        np.array([n_vocab, len(chunks_)], np.int32).tofile(f)
        chunks_.astype(np.int32).tofile(f)
        for lg in logits:
            mx = lg.max(-1, keepdims=True)
            mn = np.maximum(lg.min(-1, keepdims=True), mx - 16)
            lse = np.log(np.exp(lg - mx).astype(np.float64).sum(-1, keepdims=True)).astype(np.float32)
            scale = ((mx - mn) / np.float32(65535)).astype(np.float32)
            inv = np.where(scale > 0, 1 / np.where(scale > 0, scale, 1), 0).astype(np.float32)
            q = np.where(lg > mn, np.rint(inv * (lg - mn)), 0).astype(np.uint16)
            out = np.zeros((len(lg), nv), np.uint16)
            out[:, :4] = np.concatenate([scale, mn - mx - lse], -1).astype(np.float32).view(np.uint16)
            out[:, 4:4 + n_vocab] = q
            out.tofile(f)


def read_llama_tokens(path):
    with open(path, "rb") as f:
        assert f.read(8) == b"_logits_"
        ctx = int(np.fromfile(f, np.uint32, 1)[0])
        _, n_chunk = np.fromfile(f, np.int32, 2)
        return np.fromfile(f, np.int32, ctx * int(n_chunk)).astype(np.int64)


def llama_perplexity(bin_dir, gguf, extra, ctx, threads=1):
    cmd = NICE + [os.path.join(bin_dir, "llama-perplexity"), "-m", gguf, "-c", str(ctx), "-b", str(ctx), "-t", str(threads),
                  "-ctk", "f32", "-ctv", "f32", "--no-warmup"] + extra
    p = subprocess.run(cmd, capture_output=True, text=True)
    log = p.stdout + p.stderr
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{log[-3000:]}")
    out = {"command": " ".join(cmd[3:])}
    for key, pat in (("perplexity", r"Final estimate: PPL = ([\d.]+) \+/- ([\d.]+)"),
                     ("perplexity", r"Mean PPL\(Q\)\s*: +([\d.]+) ± +([\d.]+)"),
                     ("perplexity_base", r"Mean PPL\(base\)\s*: +([\d.]+) ± +([\d.]+)"),
                     ("kld_mean", r"Mean +KLD: +([-\d.]+) ± +([\d.]+)"),
                     ("same_top_p_percent", r"Same top p: +([\d.]+) ± +([\d.]+)")):
        m = re.search(pat, log)
        if m:
            out[key], out[key + "_stderr"] = float(m.group(1)), float(m.group(2))
    if "perplexity" not in out:
        raise RuntimeError(f"no perplexity in the output of {' '.join(cmd)}:\n{log[-3000:]}")
    return out


def moepy_run(ckpt, ids_npy, ctx, tmp):
    js = os.path.join(tmp, "moepy.json")
    cmd = NICE + [sys.executable, "-m", "moepy", "eval", ckpt, "--tokens", ids_npy, "--ctx", str(ctx),
                  "--dtype", "float32", "--threads", "1", "--quiet", "--json", js]
    sh(cmd, cwd=ROOT)
    with open(js) as f:
        rep = json.load(f)
    return {"perplexity": rep["perplexity"], "perplexity_stderr": rep["perplexity_stderr"],
            "tokens_scored": rep["tokens_scored"], "command": " ".join(cmd[3:])}


def convert(tree, ckpt, out):
    if not os.path.isfile(out):
        p = subprocess.run(NICE + [sys.executable, "-c", CONVERT, tree, ckpt, "--outtype", "f32", "--outfile", out],
                           capture_output=True, text=True)
        if p.returncode:
            tail = [l for l in (p.stdout + p.stderr).strip().splitlines() if l.strip()][-12:]
            raise RuntimeError("convert_hf_to_gguf.py failed:\n" + "\n".join(tail))
    import gguf  # the PyPI package reads what the tree's converter writes
    r = gguf.GGUFReader(out)
    f = r.fields.get("tokenizer.ggml.add_bos_token")
    return bool(f.parts[f.data[0]][0]) if f is not None else False


def rel(a, b):
    return (a - b) / b if a is not None and b else None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoints", nargs="*")
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--domains", nargs="+", default=["prose", "code"])
    ap.add_argument("--gguf-dir", default=os.path.join(ROOT, "build", "gguf"))
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results",
                                                  f"perplexity_peers_{datetime.date.today().isoformat()}.json"))
    args = ap.parse_args(argv)
    cks = [os.path.abspath(c) for c in (args.checkpoints or default_checkpoints())]
    tree = sh([os.path.join(ROOT, "scripts", "get_llamacpp.sh")])
    bin_dir = os.environ.get("LLAMACPP_BIN") or sh([os.path.join(ROOT, "benchmarks", "build_llamacpp.sh")])
    os.makedirs(args.gguf_dir, exist_ok=True)
    rows, failures = [], []
    for ck in cks:
        name = os.path.basename(ck.rstrip("/"))
        from moepy.eval.run import checkpoint_hash  # cache key: the checkpoint's content, not its name
        gguf_path = os.path.join(args.gguf_dir, f"{name}-{checkpoint_hash(ck)[:12]}-f32.gguf")
        try:
            gguf_bos = convert(tree, ck, gguf_path)
        except RuntimeError as exc:
            failures.append({"checkpoint": name, "stage": "convert", "error": str(exc)})
            print(f"{name}: {exc}", file=sys.stderr)
            continue
        for dom in args.domains:
            text_path = os.path.join(ROOT, "moepy", "data", "heldout", f"{dom}.txt")
            with open(text_path, encoding="utf-8") as f:
                ids, bos = token_ids(ck, f.read())
            ch = chunked(ids, args.ctx, bos)
            row = {"checkpoint": name, "path": ck, "domain": dom, "tokens": len(ids), "chunks": len(ch),
                   "tokenizer_adds_bos": bos is not None, "gguf_add_bos": gguf_bos, "gguf": gguf_path}
            with tempfile.TemporaryDirectory() as tmp:
                npy = os.path.join(tmp, "ids.npy")
                np.save(npy, ids)
                row["moepy"] = moepy_run(ck, npy, args.ctx, tmp)
                nll, logits = transformers_run(ck, ch, args.ctx)
                row["transformers"] = {"perplexity": math.exp(nll.mean()), "tokens_scored": len(nll),
                                       "perplexity_stderr": math.exp(nll.mean()) * nll.std(ddof=1) / math.sqrt(
                                           len(nll) - 1)}
                base = os.path.join(tmp, "ids.kld")
                write_llama_logits(base, ch, logits, args.ctx)
                del logits
                row["llamacpp_ids"] = llama_perplexity(bin_dir, gguf_path, ["--kl-divergence-base", base,
                                                                            "--kl-divergence"], args.ctx)
                saved = os.path.join(tmp, "text.kld")
                row["llamacpp_text"] = llama_perplexity(bin_dir, gguf_path, ["-f", text_path,
                                                                             "--kl-divergence-base", saved], args.ctx)
                theirs = read_llama_tokens(saved)
                os.remove(saved)
            ours = ids[:ch.size]  # the raw ids (llama saves them before its per-chunk BOS replacement)
            n = min(len(ours), len(theirs))
            diff = np.nonzero(ours[:n] != theirs[:n])[0]
            row["text_tokenization"] = {
                "llama_tokens_saved": int(len(theirs)), "ours_chunked": int(len(ours)),
                "identical": bool(len(diff) == 0 and len(ours) == len(theirs)),
                "first_mismatch": None if len(diff) == 0 else {
                    "index": int(diff[0]), "ours": ours[diff[0]:diff[0] + 6].tolist(),
                    "llama": theirs[diff[0]:diff[0] + 6].tolist()}}
            t, m, l = (row["transformers"]["perplexity"], row["moepy"]["perplexity"],
                       row["llamacpp_ids"]["perplexity"])
            row["rel_diff"] = {"moepy_vs_transformers": rel(m, t), "llamacpp_vs_transformers": rel(l, t),
                               "llamacpp_vs_moepy": rel(l, m)}
            rows.append(row)
            print(f"{name}/{dom}: moepy {m:.6f} transformers {t:.6f} llama.cpp {l:.6f} (text: "
                  f"{row['llamacpp_text']['perplexity']:.4f})", file=sys.stderr)
    hdr = ["checkpoint", "domain", "scored", "moepy", "transformers", "llama.cpp", "m/t-1", "l/t-1", "l/m-1",
           "llama -f text", "text ids same"]
    table = [[r["checkpoint"], r["domain"], r["moepy"]["tokens_scored"], f"{r['moepy']['perplexity']:.6f}",
              f"{r['transformers']['perplexity']:.6f}", f"{r['llamacpp_ids']['perplexity']:.6f}",
              *(f"{v:+.2e}" for v in r["rel_diff"].values()), f"{r['llamacpp_text']['perplexity']:.4f}",
              "yes" if r["text_tokenization"]["identical"] else "no"] for r in rows]
    w = [max(len(str(x)) for x in col) for col in zip(hdr, *table)]
    for line in [hdr, ["-" * k for k in w]] + table:
        print("  ".join(str(x).rjust(k) for x, k in zip(line, w)))
    for fl in failures:
        print(f"{fl['checkpoint']}: {fl['stage']} failed: {fl['error']}")
    import torch
    import transformers
    env = {"torch": torch.__version__, "transformers": transformers.__version__, "llamacpp_tree": tree,
           "llamacpp_bin": bin_dir}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"date": datetime.datetime.now().isoformat(timespec="seconds"), "ctx": args.ctx,
                   "environment": env, "rows": rows, "failures": failures}, f, indent=1)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
