"""Expert parallelism on one machine: prefill and decode tokens/s, bytes moved per token and the all-to-all share
of the time for R = 1, 2, 4 ranks, against moepy.sim's prediction of the same routing and placement.

    python benchmarks/bench_ep.py [--ranks 1 2 4] [--json out.json]

Each R runs `mpirun -n R` on this file's worker: a DeepSeek-V3-shaped random model (sigmoid routing, groups,
shared expert; bf16) with the experts in contiguous blocks over the ranks, each rank prefilling its own 512-token
chunk and then decoding its own sequence (data-parallel tokens, expert-parallel experts). The machine's limit
beside it: the loopback link's bandwidth and latency (an MPI ping-pong between ranks 0 and 1 in the same job),
which parametrise the simulator's alpha-beta estimate of the exchange time. On 2 cores R = 4 oversubscribes the
machine (each rank 1 thread, shared cores), so its speed shows the exchange's cost, not a speed-up.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

SHAPE = dict(hidden_size=768, num_layers=4, num_experts=64, top_k=6, expert_intermediate_size=384, num_heads=8,
             vocab_size=8192)
PREFILL, DECODE = 512, 64


def worker(out_path: str) -> None:
    from moepy.nn import MoEModel
    from moepy.parallel import ExpertParallel, guarded

    def run():
        ep = ExpertParallel(timeout=600)
        model = MoEModel.from_pretrained(CKPT, dtype="bfloat16", expert_parallel=ep, progress=False)
        cfg = model.spec
        link = _pingpong(ep) if ep.size > 1 else None
        rng = np.random.default_rng(ep.rank)
        ids = rng.integers(0, cfg.vocab_size, PREFILL + DECODE)
        model(ids[:64])  # warm-up
        ep.group.barrier("warm-up")
        out = {"ranks": ep.size, "link": link}
        for phase in ("prefill", "decode"):
            ep.stats.clear()
            ep.group.barrier(phase)
            t0 = time.perf_counter()
            routing = []
            if phase == "prefill":
                _, r = model(ids[:PREFILL], return_routing=True)
                routing.append(r)
                tokens = PREFILL
            else:
                cache = model.new_cache(1, PREFILL + DECODE)
                model(ids[None, :PREFILL], cache=cache)
                ep.stats.clear()
                t0 = time.perf_counter()
                for t in range(DECODE):
                    _, r = model(ids[None, PREFILL + t:PREFILL + t + 1], cache=cache, return_routing=True)
                    routing.append(r)
                tokens = DECODE
            seconds = time.perf_counter() - t0
            exch = sum(s["comm_seconds"] for s in ep.stats.values())  # time in the collectives alone
            sent = {k: sum(s[k] for s in ep.stats.values()) for k in ("dispatch_bytes", "combine_bytes")}
            every = ep.group.allgather_json({"seconds": seconds, "exchange": exch, **sent,
                                             "experts": {str(i): np.concatenate([r[i].experts for r in routing]).tolist()
                                                         for i in model.moe_layers}}, phase)
            out[phase] = {"tokens_per_second": ep.size * tokens / max(e["seconds"] for e in every),
                          "exchange_share": max(e["exchange"] / e["seconds"] for e in every),
                          "dispatch_bytes_per_token": sum(e["dispatch_bytes"] for e in every) / (ep.size * tokens),
                          "combine_bytes_per_token": sum(e["combine_bytes"] for e in every) / (ep.size * tokens),
                          "exchange_seconds_max": max(e["exchange"] for e in every),
                          "predicted": _predict(model, ep, every, link, tokens)}
        from moepy.eval.run import peak_rss_bytes
        mem = ep.group.allgather_json({"rss": peak_rss_bytes(), "routed": sum(l.nbytes()["routed"]
                                                                             for l in model.moe_layers.values())}, "rss")
        out["peak_rss_bytes"] = [m["rss"] for m in mem]
        out["routed_bytes"] = [m["routed"] for m in mem]
        if ep.rank == 0:
            with open(out_path, "w") as f:
                json.dump(out, f, indent=1)
        return 0
    guarded(run)


CKPT = "/tmp/moepy_bench_ep_ckpt"


def make_checkpoint() -> None:
    """A bf16 safetensors checkpoint of the benchmark model (transformers' names), so each rank reads only its
    experts' pages from the file (from_config would build every expert on every rank)."""
    import ml_dtypes
    from moepy.configs import presets
    from moepy.io import save_file
    from moepy.nn.random_weights import random_tensors
    d = presets.get("deepseek-v3").scaled(**SHAPE).to_hf()
    if os.path.exists(os.path.join(CKPT, "config.json")) and json.load(open(os.path.join(CKPT, "config.json"))) == d:
        return
    os.makedirs(CKPT, exist_ok=True)
    tensors = {k: v.astype(ml_dtypes.bfloat16) for k, v in random_tensors(d, seed=0).items()}
    save_file(tensors, os.path.join(CKPT, "model.safetensors"))
    with open(os.path.join(CKPT, "config.json"), "w") as f:
        json.dump(d, f)


def _pingpong(ep) -> dict:
    """Loopback bandwidth (4 MiB messages) and latency (8 bytes) between ranks 0 and 1, the others waiting."""
    comm = ep.group.comm
    res = {}
    for name, size, reps in (("latency", 8, 200), ("bandwidth", 4 << 20, 20)):
        buf = np.zeros(size, np.uint8)
        ep.group.barrier("ping-pong")
        t0 = time.perf_counter()
        for _ in range(reps):
            if ep.rank == 0:
                comm.Send(buf, dest=1)
                comm.Recv(buf, source=1)
            elif ep.rank == 1:
                comm.Recv(buf, source=0)
                comm.Send(buf, dest=0)
        one_way = (time.perf_counter() - t0) / (2 * reps)
        res[name] = one_way if name == "latency" else size / one_way
    return ep.group.bcast_json(res, "ping-pong result")


def _predict(model, ep, every, link, tokens) -> dict:
    """moepy.sim.dispatch's bytes for the routing every rank saw (tokens on their own rank, the same placement),
    and its alpha-beta time with the measured link (None when moepy.sim is absent)."""
    try:
        from moepy import sim
    except ImportError:
        return None
    H = model.spec.hidden_size
    total = {"dispatch_bytes": 0, "seconds": 0.0}
    for i, layer in model.moe_layers.items():
        experts = np.concatenate([np.array(e["experts"][str(i)], np.int64) for e in every])
        device = np.repeat(np.arange(ep.size), [len(e["experts"][str(i)]) for e in every])
        pl = layer.placement
        rep = sim.dispatch(experts, pl.sim, device, token_bytes=4 * H)
        off = ~np.eye(ep.size, dtype=bool)
        total["dispatch_bytes"] += int(rep.bytes[off].sum())
        if link is not None:
            lk = sim.Link(intra_node_bw=link["bandwidth"], inter_node_bw=link["bandwidth"], latency=link["latency"])
            total["seconds"] += rep.step_time(lk)
    n = ep.size * tokens
    return {"dispatch_bytes_per_token": total["dispatch_bytes"] / n, "exchange_seconds": total["seconds"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--json")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker)
        return
    mpirun = os.path.join(os.path.dirname(sys.executable), "mpirun")
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    make_checkpoint()
    results = []
    for R in args.ranks:
        out = f"/tmp/bench_ep_{R}.json"
        subprocess.run([mpirun, "-n", str(R), "--oversubscribe", sys.executable, __file__, "--worker", out],
                       check=True, env=env)
        results.append(json.load(open(out)))
    base = {p: results[0][p]["tokens_per_second"] for p in ("prefill", "decode")}
    head = (f"{'R':>2}  {'phase':7}  {'tok/s':>8}  {'vs R=1':>6}  {'a2a share':>9}  {'dispatch B/tok':>14}  "
            f"{'sim B/tok':>9}  {'combine B/tok':>13}  {'a2a s':>7}  {'sim a2a s':>9}")
    print(f"model: deepseek-v3 shape {SHAPE}, bf16, prefill {PREFILL} tokens per rank, decode {DECODE} tokens per rank")
    print(head)
    print("-" * len(head))
    for r in results:
        for p in ("prefill", "decode"):
            x = r[p]
            pr = x["predicted"] or {}
            print(f"{r['ranks']:>2}  {p:7}  {x['tokens_per_second']:8.1f}  {x['tokens_per_second'] / base[p]:6.2f}  "
                  f"{x['exchange_share']:9.1%}  {x['dispatch_bytes_per_token']:14.0f}  "
                  f"{pr.get('dispatch_bytes_per_token', float('nan')):9.0f}  {x['combine_bytes_per_token']:13.0f}  "
                  f"{x['exchange_seconds_max']:7.3f}  {pr.get('exchange_seconds', float('nan')):9.3f}")
        if r.get("link"):
            print(f"    loopback link: {r['link']['bandwidth'] / 1e9:.2f} GB/s, latency {r['link']['latency'] * 1e6:.1f} us")
        print(f"    per rank: routed experts {[round(b / 2**20) for b in r['routed_bytes']]} MiB, peak RSS "
              f"{[round(b / 2**20) for b in r['peak_rss_bytes']]} MiB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
