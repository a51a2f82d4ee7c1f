"""`python -m moepy eval [CHECKPOINT]` and `python -m moepy generate [CHECKPOINT] --prompt TEXT`.

CHECKPOINT: a checkpoint directory, a .gguf file, or the name of a built-in checkpoint (default: the built-in
default, evaluated on its held-out text). Problems with the input print one line and exit with code 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


class UsageError(Exception):
    """Bad input: printed without a traceback, exit code 2."""


def _load(args):
    from ..eval import builtin
    from ..moe import quant
    from ..nn import MoEModel
    import moepy
    if args.threads is not None:
        if args.threads < 1:
            raise UsageError(f"--threads must be >= 1, got {args.threads}")
        moepy.set_num_threads(args.threads)
    if args.activations is not None:
        moepy.set_activation_precision(args.activations)
    ck = args.checkpoint
    is_builtin = ck is None or (not os.path.exists(ck) and ck in builtin.names())
    if is_builtin:
        try:
            ck = builtin.path(ck)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    elif not os.path.exists(ck):
        raise UsageError(f"checkpoint {ck!r}: no such directory or file (built-in ones: "
                         f"{', '.join(builtin.names()) or 'none'})")
    if args.quantize is not None and args.quantize not in quant.FORMATS:
        raise UsageError(f"--quantize must be one of {', '.join(quant.FORMATS)}")
    calibrate = getattr(args, "calibrate", None)
    from ..moe.calibrate import FORMATS as CALIBRATED_FORMATS
    if calibrate is not None and args.quantize not in CALIBRATED_FORMATS:
        raise UsageError(f"--calibrate makes calibrated INT4 experts: give it with --quantize "
                         f"{' / '.join(CALIBRATED_FORMATS)}")
    if args.quantize is not None:
        try:
            quant.check_format(args.quantize, args.group_size)
        except ValueError as exc:
            raise UsageError(f"--group-size: {exc}") from None
    ep = _expert_parallel(args, ck)
    try:
        model = MoEModel.from_pretrained(ck, dtype=args.dtype, quantize=None if calibrate else args.quantize,
                                         group_size=args.group_size, expert_parallel=ep,
                                         progress=not args.quiet and sys.stderr.isatty() and _is_root(ep))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"checkpoint {ck}: {exc}") from None
    if calibrate is not None:
        if ep is not None:
            raise UsageError("--calibrate runs in one process (calibrate, save_pretrained, then evaluate the copy)")
        _calibrate(model, calibrate, args)
    return model, ck, is_builtin


def _calibrate(model, path: str, args) -> None:
    """Calibrated INT4 experts (moepy.moe.calibrate) from the text or .npy ids in `path`."""
    from ..moe.calibrate import calibrate_int4
    if path.endswith(".npy"):
        ids = _npy_ids(path, "--calibrate")
    else:
        ids = _text_ids(model, lambda: open(path, encoding="utf-8").read(), f"--calibrate {path}",
                        "--calibrate: the checkpoint has no tokenizer.json: give the ids as a .npy file")
    if ids.size and (ids.min() < 0 or ids.max() >= model.vocab_size):
        raise UsageError(f"--calibrate {path}: token ids in [0, {model.vocab_size}) expected")
    try:
        rep = calibrate_int4(model, ids.astype(np.int64), ctx=min(args.ctx, model.spec.max_position_embeddings),
                             format=args.quantize, group_size=args.group_size)
    except ValueError as exc:
        raise UsageError(f"--calibrate {path}: {exc}") from None
    if not args.quiet:
        print(f"calibrated INT4: {rep}", file=sys.stderr)


def _is_root(ep) -> bool:
    return ep is None or ep.rank == 0


def _expert_parallel(args, ck):
    """The ExpertParallel of --expert-parallel (None without it), after every rank agreed on what it runs."""
    if not getattr(args, "expert_parallel", False):
        return None
    if args.ep_timeout <= 0:
        raise UsageError(f"--ep-timeout must be > 0 seconds, got {args.ep_timeout}")
    try:
        from ..parallel import ExpertParallel
    except ImportError as exc:
        raise UsageError(str(exc)) from None
    import moepy
    from ..eval.run import checkpoint_hash
    placement = args.placement
    if placement not in ("contiguous", "round_robin"):
        from ..parallel import load_placement
        try:
            placement = load_placement(placement)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    ep = ExpertParallel(placement=placement, timeout=args.ep_timeout,
                        threads="auto" if args.threads is None else args.threads)
    ep.check_ranks({"moepy": moepy.__version__, "checkpoint_sha256": checkpoint_hash(ck),
                    "dtype": args.dtype, "quantize": args.quantize, "placement": args.placement})
    return ep


def _add_parallel_args(ap) -> None:
    ap.add_argument("--expert-parallel", action="store_true",
                    help="under mpirun: each rank holds a share of every MoE layer's experts (moepy.parallel)")
    ap.add_argument("--placement", default="contiguous",
                    help="contiguous (default) | round_robin | a JSON file of which ranks hold each expert "
                         "(moepy.parallel.ExpertPlacement.to_json, e.g. of a moepy.sim placement)")
    ap.add_argument("--ep-timeout", type=float, default=300.0,
                    help="seconds any one collective may take before the job ends with an error (default 300)")


def _ids(args, model, is_builtin):
    from ..eval import builtin
    if args.text is not None and args.tokens is not None:
        raise UsageError("give --text or --tokens, not both")
    if args.tokens is not None:
        return _npy_ids(args.tokens, "--tokens")
    if args.text is None and not is_builtin:
        raise UsageError("give the text to evaluate: --text FILE (or --tokens FILE.npy)")
    read = builtin.heldout_text if args.text is None else (lambda: open(args.text, encoding="utf-8").read())
    return _text_ids(model, read, f"--text {args.text}", "the checkpoint has no tokenizer.json: give --tokens FILE.npy")


def _npy_ids(path: str, flag: str) -> np.ndarray:
    """(N,) int64 token ids of a .npy file given as `flag`; UsageError for an unreadable or non-integer file."""
    try:
        ids = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UsageError(f"{flag} {path}: {exc}") from None
    if ids.dtype.kind not in "iu":
        raise UsageError(f"{flag} {path}: integer ids expected, got {ids.dtype}")
    return np.asarray(ids).reshape(-1).astype(np.int64)


def _text_ids(model, read, what: str, no_tokenizer: str) -> np.ndarray:
    """(N,) int64 ids of the text read() returns, by the checkpoint's tokenizer (no special tokens added)."""
    if model.tokenizer is None:
        raise UsageError(no_tokenizer)
    try:
        text = read()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{what}: {exc}") from None
    return np.asarray(model.tokenizer.encode(text, add_special_tokens=False), np.int64)


def _fmt_table(rows, header):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(header)]
    line = "  ".join(str(h).rjust(w) for h, w in zip(header, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(str(c).rjust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(out)


def print_report(rep: dict, file=sys.stdout) -> None:
    """The readable form of an eval report."""
    p = print
    p(f"perplexity {rep['perplexity']:.4f} +/- {rep['perplexity_stderr']:.4f} over {rep['tokens_scored']} tokens "
      f"({rep['chunks']} chunks of {rep['ctx']}{', every position' if rep['score_all'] else ''}); unigram "
      f"baseline {rep['baseline_unigram_perplexity']:.2f} (ratio {rep['perplexity'] / rep['baseline_unigram_perplexity']:.3f})",
      file=file)
    if "kld_mean" in rep:
        pc = rep["kld_percentiles"]
        p(f"KLD {rep['kld_mean']:.6f} +/- {rep['kld_stderr']:.6f} (max {rep['kld_max']:.4f}, 99% {pc['99']:.4f}, "
          f"median {pc['50']:.6f}); same top token {100 * rep['same_top_p']:.2f}%; delta p mean "
          f"{100 * rep['delta_p_mean']:+.3f}%, rms {100 * rep['delta_p_rms']:.3f}%; ppl ratio "
          f"{rep['perplexity_ratio']:.4f}", file=file)
    rows = [(r["layer"], f"{r['cv']:.3f}", f"{r['max_over_mean']:.2f}", f"{r['entropy_fraction']:.3f}", r["dead"],
             r["cold"], f"{100 * r['drop_rate']:.2f}%",
             f"{r['same_expert_rate_first']:.3f} / {r['random_first']:.3f}",
             f"{r['same_expert_rate_any']:.3f} / {r['random_any']:.3f}") for r in rep["layers"]]
    p("routing per MoE layer (consecutive-token same-expert rate: observed / independent):", file=file)
    p(_fmt_table(rows, ["layer", "CV", "max/mean", "entropy", "dead", "cold", "dropped", "same 1st",
                        "same any"]), file=file)
    env = rep.get("environment", {})
    p(f"{rep['tokens_per_second']:.1f} tokens/s prefill, peak RSS {rep['peak_rss_bytes'] / 2**20:.0f} MiB; moepy "
      f"{env.get('moepy')}, {env.get('isa')}, {env.get('threads')} threads", file=file)


def print_parallel(par: dict, file=None) -> None:
    """The expert-parallel part of a report: experts, routed bytes and peak RSS per rank, bytes per layer."""
    p = lambda *a: print(*a, file=file)  # noqa: E731
    p(f"expert parallel over {par['ranks']} ranks: routed expert MiB per rank "
      f"{[round(b / 2**20, 1) for b in par['routed_bytes']]}, peak RSS MiB {[round(b / 2**20) for b in par['peak_rss_bytes']]}")
    mib = lambda b: "-" if b is None else f"{b / 2**20:.3f}"  # noqa: E731
    rows = [[i, f"{v['calls']}", mib(v["dispatch_bytes"]), mib(v.get("predicted_dispatch_bytes")),
             mib(v["combine_bytes"]), f"{v['seconds_max'] * 1e3:.0f}", f"{v['comm_seconds_max'] * 1e3:.0f}"]
            for i, v in par["layers"].items()]
    p(_fmt_table(rows, ["layer", "calls", "dispatch MiB", "moepy.sim predicts", "combine MiB", "exchange ms",
                        "in collectives ms"]))


def eval_main(argv) -> int:
    ap = argparse.ArgumentParser(prog="python -m moepy eval", description="Perplexity, KLD and the routing report "
                                 "of a checkpoint on a text (llama-perplexity's convention).")
    ap.add_argument("checkpoint", nargs="?", help="directory, .gguf file or built-in name (default: the built-in)")
    ap.add_argument("--text", help="a UTF-8 text file, tokenized with the checkpoint's tokenizer.json")
    ap.add_argument("--tokens", help="a .npy file of token ids, used as they are")
    ap.add_argument("--ctx", type=int, default=512, help="chunk length (default 512)")
    ap.add_argument("--score-all", action="store_true", help="score every position >= 1 of each chunk")
    ap.add_argument("--chunks", type=int, help="evaluate only the first N chunks (llama-perplexity's --chunks)")
    ap.add_argument("--quantize", help="int8 | int4 | int4_asym | int4_nl: the routed experts")
    ap.add_argument("--group-size", type=int, default=32, help="--quantize's group size: 32, 64 or 128 (default 32)")
    ap.add_argument("--calibrate", help="with --quantize int4 / int4_asym / int4_nl: calibrated INT4 experts (GPTQ from each "
                                        "expert's own "
                                        "tokens, moepy.moe.calibrate) fitted on this text file (or .npy ids)")
    ap.add_argument("--dtype", choices=("float32", "bfloat16"))
    ap.add_argument("--activations", choices=("fp32", "bf16", "auto"),
                    help="activations meeting bf16 weights (moepy.set_activation_precision; default fp32)")
    ap.add_argument("--top-k", type=int, help="active experts per token in every MoE layer")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--save-logprobs", help="write this run's log-probabilities (.npz) for a later --kl-base")
    ap.add_argument("--kl-base", help="compare against a --save-logprobs file: KL divergence")
    ap.add_argument("--routing-drift", action="store_true",
                    help="with --quantize: split the KLD from the unquantized checkpoint into the experts' own error "
                         "and the routers' changed choices (moepy.eval.routing_drift)")
    ap.add_argument("--json", help="write the report as JSON to this file")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_parallel_args(ap)
    args = ap.parse_args(argv)
    if args.expert_parallel:
        from ..parallel import guarded
        return guarded(lambda: _eval(args))
    return _eval(args)


def _check_routing_drift(args) -> None:
    """UsageError unless --routing-drift has what it compares: quantized experts, one process, the own top-k."""
    if args.quantize is None:
        raise UsageError("--routing-drift measures quantized experts against the checkpoint's own: give --quantize")
    if args.expert_parallel or args.top_k is not None:
        raise UsageError("--routing-drift runs in one process, with the checkpoint's own top-k")


def _routing_drift(args, model, ck, ids, bos) -> dict:
    """routing_drift of the quantized model against the checkpoint loaded without --quantize."""
    from ..eval import routing_drift
    from ..nn import MoEModel
    ref = MoEModel.from_pretrained(ck, dtype=args.dtype, progress=False)
    return routing_drift(ref, model, ids, ctx=args.ctx, bos=bos, max_chunks=args.chunks, score_all=args.score_all)


def print_drift(d: dict, file=sys.stdout) -> None:
    """The readable form of routing_drift's result."""
    rerouted = ", ".join(f"{i}: {100 * v['changed_set_rate']:.1f}%" for i, v in d["layers"].items())
    print(f"routing drift: KLD {d['kld_mean']:.6f} as quantized, {d['kld_mean_replayed']:.6f} with the unquantized "
          f"checkpoint's routing replayed (the experts' own error): {100 * d['routing_share']:.0f}% from the routers' "
          f"changed choices; tokens with another expert set per MoE layer: {rerouted}", file=file)


def _eval(args) -> int:
    from ..eval import EvalError, evaluate
    import moepy
    try:
        if args.routing_drift:  # before anything is loaded
            _check_routing_drift(args)
        model, ck, is_builtin = _load(args)
        ids = _ids(args, model, is_builtin)
        tok = model.tokenizer
        bos = tok.bos_token_id if tok is not None and tok.adds_bos else None
        rep = evaluate(model, ids, ctx=args.ctx, score_all=args.score_all, bos=bos, top_k=args.top_k,
                       save_logprobs=args.save_logprobs, kl_base=args.kl_base, progress=not args.quiet,
                       checkpoint=ck, max_chunks=args.chunks)
        if args.routing_drift:
            rep["routing_drift"] = _routing_drift(args, model, ck, ids, bos)
    except (UsageError, EvalError) as exc:
        print(f"moepy eval: {exc}", file=sys.stderr)
        return 2
    from ..eval.run import checkpoint_hash
    info = moepy.build_info()
    rep["environment"] = {"moepy": moepy.__version__, "isa": info.get("isa"), "threads": moepy.get_num_threads(),
                          "checkpoint": os.path.abspath(ck), "checkpoint_sha256": checkpoint_hash(ck),
                          "dtype": model.dtype, "quantize": model.quantize, "group_size": model.group_size,
                          "top_k": args.top_k,
                          "activations": moepy.get_activation_precision()[0]}
    if not _is_root(model.expert_parallel):
        return 0
    print_report(rep)
    if "routing_drift" in rep:
        print_drift(rep["routing_drift"])
    if "expert_parallel" in rep:
        print_parallel(rep["expert_parallel"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rep, f, indent=1)
    return 0


def generate_main(argv) -> int:
    ap = argparse.ArgumentParser(prog="python -m moepy generate", description="Generate text from a prompt.")
    ap.add_argument("checkpoint", nargs="?", help="directory, .gguf file or built-in name (default: the built-in)")
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--top-k", type=int, dest="sample_top_k", help="sample from the k most likely tokens")
    ap.add_argument("--top-p", type=float)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--quantize")
    ap.add_argument("--group-size", type=int, default=32)
    ap.add_argument("--dtype", choices=("float32", "bfloat16"))
    ap.add_argument("--activations", choices=("fp32", "bf16", "auto"),
                    help="activations meeting bf16 weights (moepy.set_activation_precision; default fp32)")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--quiet", action="store_true")
    _add_parallel_args(ap)
    args = ap.parse_args(argv)
    if args.expert_parallel:
        from ..parallel import guarded
        return guarded(lambda: _generate(args))
    return _generate(args)


def _generate(args) -> int:
    try:
        model, _, _ = _load(args)
        if model.tokenizer is None:
            raise UsageError("the checkpoint has no tokenizer.json: text generation needs one")
        # under expert parallelism every rank runs the same generation (same ids, same seed); rank 0 prints
        root = _is_root(model.expert_parallel)
        if root:
            sys.stdout.write(args.prompt)
            sys.stdout.flush()
        t0 = time.perf_counter()
        model.generate(prompt=args.prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                       top_k=args.sample_top_k, top_p=args.top_p, seed=args.seed,
                       stream=(lambda piece: (sys.stdout.write(piece), sys.stdout.flush())) if root else None)
        dt = time.perf_counter() - t0
    except (UsageError, ValueError) as exc:
        print(f"\nmoepy generate: {exc}", file=sys.stderr)
        return 2
    if not root:
        return 0
    g = model.last_generation
    print(f"\n[{g['new_tokens']} tokens in {dt:.2f} s: prefill {g['prompt_tokens']} tokens in "
          f"{g['prefill_seconds'] * 1e3:.0f} ms, decode {g['decode_tokens_per_second']:.1f} tokens/s]",
          file=sys.stderr)
    return 0
