"""Accuracy at the same bits: moepy's INT8 / INT4 / calibrated INT4 experts against llama.cpp's Q8_0 / Q4_0 / IQ4_NL on the
built-in trained checkpoints, KL divergence from the same float32 reference on the same token ids.

    LLAMACPP_BIN=$(benchmarks/build_llamacpp.sh) python benchmarks/bench_quant_peers.py [--chunks 40] [--ctx 256]

Text: the built-ins' held-out prose and code, each split in halves: the first halves calibrate (moepy's calibrated
INT4, moepy.moe.calibrate), the second halves are evaluated (chunks of --ctx, llama-perplexity's convention, the
first --chunks). Reference: moepy's float32 logits of the scored positions (moepy equals transformers to 1.7e-7 and
llama.cpp F32 to 2e-4 in perplexity on these models: bench_perplexity_peers.py), written both as moepy's log-prob
file and as llama-perplexity's --kl-divergence-base file, so both engines are scored against one reference on one
set of ids. llama.cpp: the F32 GGUF conversion (convert_hf_to_gguf.py) quantized by llama-quantize to Q8_0 / Q4_0
twice: only the routed-expert tensors (--tensor-type overrides keep the rest F32: the scope moepy quantizes), and
the whole model (llama-quantize's default recipe); Q4_1 and IQ4_NL experts only. moepy: quantize="int8" / "int4" (groups of 32: 8.5 / 4.5 bits per
weight, as Q8_0 / Q4_0), int4_asym (scale and offset per group of 32: 5.0 bits, as llama.cpp's Q4_1; groups of 64
would make it 4.5 bits, but the built-ins' expert widths are 32), int4_nl (IQ4_NL's 16 levels, 4.5 bits), and
calibrate_int4 in the three INT4 formats. Speed: tokens/s of moepy's evaluation on 1 thread (llama-perplexity
prints none finer than 0.01 s per pass; the two engines' speeds on real widths: bench_llamacpp.py). For moepy's rows,
"KLD replayed" is the KLD with the float32 model's routing replayed into every MoE layer (moepy.eval.routing_drift)
and "routing share" the part of the KLD the routers' changed choices cause (1 - replayed / KLD).
"""
from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [HERE, ROOT]
from bench_perplexity_peers import NICE, convert, default_checkpoints, llama_perplexity, sh, token_ids, \
    write_llama_logits  # noqa: E402
from common import machine_info, write_json  # noqa: E402


def split_ids(ck):
    """(calibration ids, evaluation ids, bos): the first and second halves of prose and of code."""
    cal, ev = [], []
    bos = None
    for dom in ("prose", "code"):
        with open(os.path.join(ROOT, "moepy", "data", "heldout", f"{dom}.txt"), encoding="utf-8") as f:
            ids, bos = token_ids(ck, f.read())
        cal.append(ids[: len(ids) // 2])
        ev.append(ids[len(ids) // 2:])
    return np.concatenate(cal), np.concatenate(ev), bos


def quantize_gguf(bin_dir, f32, out, qtype, experts_only):
    if os.path.exists(out):
        return out
    cmd = NICE + [os.path.join(bin_dir, "llama-quantize")]
    if experts_only:  # the type for every tensor, then float32 for all but the routed-expert stacks (llama-quantize
        # leaves every tensor alone when the target type itself is F32, overrides included)
        for pattern in ("attn", "ffn_gate_inp", "shexp", r"ffn_(gate|up|down)\.weight"):
            cmd += ["--tensor-type", f"{pattern}=f32"]
        cmd += ["--output-tensor-type", "f32", "--token-embedding-type", "f32", f32, out, qtype]
    else:
        cmd += [f32, out, qtype]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{(p.stdout + p.stderr)[-2000:]}")
    return out


def gguf_bits(path):
    """(bits per weight of the routed-expert tensors, of all tensors) of a GGUF file."""
    import gguf
    r = gguf.GGUFReader(path)
    eb = en = ab = an = 0
    for t in r.tensors:
        n = int(np.prod(t.shape))
        ab, an = ab + int(t.n_bytes), an + n
        if "_exps" in t.name:
            eb, en = eb + int(t.n_bytes), en + n
    return 8 * eb / max(en, 1), 8 * ab / an


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="*")
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--chunks", type=int, default=40)
    ap.add_argument("--gguf-dir", default=os.path.join(ROOT, "build", "gguf"))
    ap.add_argument("--out", default=f"bench_quant_peers_{datetime.date.today()}", help="results/<out>.json")
    args = ap.parse_args(argv)
    from moepy.eval import evaluate, routing_drift
    from moepy.eval.perplexity import chunks as make_chunks, scored_positions
    from moepy.eval.run import checkpoint_hash
    from moepy.moe import quant
    from moepy.moe.calibrate import calibrate_int4
    from moepy.nn import MoEModel
    import moepy
    moepy.set_num_threads(1)  # as llama-perplexity -t 1 (the tok/s column compares one core each)
    tree = sh([os.path.join(ROOT, "scripts", "get_llamacpp.sh")])
    bin_dir = os.environ.get("LLAMACPP_BIN") or sh([os.path.join(HERE, "build_llamacpp.sh")])
    os.makedirs(args.gguf_dir, exist_ok=True)
    rows = []
    for ck in [os.path.abspath(c) for c in (args.checkpoints or default_checkpoints())]:
        name = os.path.basename(ck.rstrip("/"))
        f32 = os.path.join(args.gguf_dir, f"{name}-{checkpoint_hash(ck)[:12]}-f32.gguf")
        convert(tree, ck, f32)
        cal, ev, bos = split_ids(ck)
        ch = make_chunks(ev, args.ctx, bos)[: args.chunks]
        ev = ev[: ch.size]
        pos = scored_positions(args.ctx, False)
        ref = MoEModel.from_pretrained(ck, dtype="float32", progress=False)
        with tempfile.TemporaryDirectory() as tmp:
            base_npz = os.path.join(tmp, "base.npz")
            r0 = evaluate(ref, ev, ctx=args.ctx, bos=bos, save_logprobs=base_npz)
            logits = [ref(c)[pos] for c in ch]
            base_llama = os.path.join(tmp, "base.kld")
            write_llama_logits(base_llama, ch, logits, args.ctx)
            del logits
            runs = []
            drift = lambda m: routing_drift(ref, m, ev, ctx=args.ctx, bos=bos)  # noqa: E731
            for fmt, G in (("int8", 32), ("int4", 32), ("int4_asym", 32), ("int4_nl", 32)):
                m = MoEModel.from_pretrained(ck, dtype="float32", quantize=fmt, group_size=G, progress=False)
                runs.append((f"moepy {fmt} g{G}", quant.bits_per_weight(fmt, G),
                             evaluate(m, ev, ctx=args.ctx, bos=bos, kl_base=base_npz), drift(m)))
            cal_s = {}
            for fmt, G in (("int4", 32), ("int4_asym", 32), ("int4_nl", 32)):
                m = MoEModel.from_pretrained(ck, dtype="float32", progress=False)
                t0 = time.perf_counter()
                rep = calibrate_int4(m, cal, ctx=args.ctx, format=fmt, group_size=G)
                cal_s[fmt] = time.perf_counter() - t0
                runs.append((f"moepy {fmt} g{G} calibrated ({sum(rep.fallback.values())} of "
                             f"{sum(rep.calibrated.values()) + sum(rep.fallback.values())} experts plain)",
                             quant.bits_per_weight(fmt, G), evaluate(m, ev, ctx=args.ctx, bos=bos, kl_base=base_npz),
                             drift(m)))
            for row_name, bits, r, drift in runs:
                rows.append({"checkpoint": name, "engine": row_name, "expert bpw": bits, "model bpw": None,
                             "ppl": r["perplexity"], "ppl ratio": r["perplexity_ratio"], "KLD": r["kld_mean"],
                             "KLD replayed": drift["kld_mean_replayed"], "routing share": drift["routing_share"],
                             "same top": r["same_top_p"], "tok/s": r["tokens_per_second"]})
            for qtype in ("Q8_0", "Q4_0", "Q4_1", "IQ4_NL"):
                for experts_only in ((True, False) if qtype in ("Q8_0", "Q4_0") else (True,)):
                    out = os.path.join(args.gguf_dir, f"{name}-{checkpoint_hash(ck)[:12]}-{qtype}"
                                                      f"{'-experts' if experts_only else ''}.gguf")
                    quantize_gguf(bin_dir, f32, out, qtype, experts_only)
                    lr = llama_perplexity(bin_dir, out, ["--kl-divergence-base", base_llama, "--kl-divergence",
                                                         "--chunks", str(len(ch))], args.ctx)
                    eb, ab = gguf_bits(out)
                    rows.append({"checkpoint": name, "engine": f"llama.cpp {qtype}" + (" (experts only)" if
                                                                                          experts_only else " (all)"),
                                 "expert bpw": eb, "model bpw": ab, "ppl": lr["perplexity"],
                                 "ppl ratio": lr["perplexity"] / r0["perplexity"], "KLD": lr.get("kld_mean"),
                                 "KLD replayed": None, "routing share": None,
                                 "same top": lr.get("same_top_p_percent", float("nan")) / 100,
                                 "tok/s": None})  # llama-perplexity prints no timing finer than 0.01 s per pass
        cal_times = " / ".join(f"{v:.0f}" for v in cal_s.values())
        rows.append({"checkpoint": name, "engine": f"(float32 reference; calibration {cal_times} s "
                                                   f"({' / '.join(cal_s)}) on {len(cal):,} tokens)",
                     "expert bpw": 32.0, "model bpw": 32.0, "ppl": r0["perplexity"], "ppl ratio": 1.0, "KLD": 0.0,
                     "KLD replayed": 0.0, "routing share": None,
                     "same top": 1.0, "tok/s": r0["tokens_per_second"]})
        print(f"  {name} done", flush=True)
    hdr = list(rows[0])
    fmt = lambda k, v: "-" if v is None else (f"{v:.5f}" if k.startswith("KLD") else f"{v:.0f}" if k == "tok/s" else  # noqa: E731
                                             f"{v:.4f}" if isinstance(v, float) else str(v))
    table = [[fmt(k, r[k]) for k in hdr] for r in rows]
    w = [max(len(str(x)) for x in col) for col in zip(hdr, *table)]
    for line in [hdr, ["-" * k for k in w]] + table:
        print("  ".join(str(x).ljust(k) if i < 2 else str(x).rjust(k) for i, (x, k) in enumerate(zip(line, w))))
    write_json(args.out, {"machine": machine_info(), "ctx": args.ctx,
                                                               "chunks": args.chunks, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
