"""Run under mpirun by tests/parallel/test_expert_parallel.py: one scenario of expert parallelism per call.

    mpirun -n R python ep_worker.py SCENARIO
compare: the built-in deepseek_v3 and mixtral checkpoints, int4 experts, a random Llama 4 (scaled input), a
  moepy.sim placement with replicas: logits and perplexity bitwise equal to one process; prints "OK <rank>".
kill / raise / hang: rank 1 dies (SIGKILL), raises, or stops answering mid-run; mismatch: rank 1 loads another
  checkpoint. Each must end the whole job with an error.
"""
import os
import signal
import sys
import time

import numpy as np

from moepy.configs import presets
from moepy.eval import builtin, evaluate
from moepy.nn import MoEModel
from moepy.parallel import ExpertParallel, ExpertPlacement, guarded


def same(ep, a, b, what):
    if not np.array_equal(a, b):
        raise AssertionError(f"rank {ep.rank}: {what} differs from one process (max {np.abs(a - b).max():.3g})")


def check_prediction(ep, model, ids, what):
    """The dispatch bytes every rank sent for one forward equal moepy.sim.dispatch's prediction for the routing
    the ranks saw (tokens on their own rank), layer by layer."""
    from moepy import sim
    ep.stats.clear()
    _, routing = model(ids, return_routing=True)
    H = model.spec.hidden_size
    for i, layer in model.moe_layers.items():
        every = ep.group.allgather_json({"experts": routing[i].experts.tolist(),
                                         "bytes": ep.stats[i]["dispatch_bytes"]}, "prediction check")
        experts = np.concatenate([np.array(x["experts"], np.int64) for x in every])
        device = np.repeat(np.arange(ep.size), [len(x["experts"]) for x in every])
        rep = sim.dispatch(experts, layer.placement.sim, device, token_bytes=4 * H)
        predicted = int(rep.bytes.sum() - rep.local_bytes)
        measured = sum(x["bytes"] for x in every)
        if predicted != measured or (ep.size > 1 and measured == 0):
            raise AssertionError(f"{what} layer {i}: measured {measured} dispatch bytes, moepy.sim predicts {predicted}")


def compare(ep):
    rng = np.random.default_rng(ep.rank)  # every rank its own tokens
    ep.ranks_per_node, ep.num_nodes = 1, ep.size  # each rank a node: the node limit is checked on ranks
    for name, quantize in (("deepseek_v3", None), ("mixtral", None), ("deepseek_v3", "int4")):
        path = builtin.path(name)
        m = MoEModel.from_pretrained(path, quantize=quantize, expert_parallel=ep, progress=False)
        ref = MoEModel.from_pretrained(path, quantize=quantize, progress=False)
        ids = np.array(ref.tokenizer.encode(builtin.heldout_text("prose")), np.int64)
        start = int(rng.integers(0, 5000))
        same(ep, m(ids[start:start + 77]), ref(ids[start:start + 77]), f"{name} logits")
        check_prediction(ep, m, ids[start:start + 77], name)
        batch = ids[start:start + 40].reshape(2, 20)
        mask = np.ones((2, 20), np.int64)
        mask[1, :5] = 0
        same(ep, m(batch, attention_mask=mask), ref(batch, attention_mask=mask), f"{name} padded batch")
        cache, rcache = m.new_cache(1, 64), ref.new_cache(1, 64)
        m(ids[None, :30], cache=cache), ref(ids[None, :30], cache=rcache)
        same(ep, m(ids[None, 30:31], cache=cache), ref(ids[None, 30:31], cache=rcache), f"{name} decode")
        a = evaluate(m, ids, ctx=64, max_chunks=5)  # 5 chunks: some rounds leave ranks idle
        b = evaluate(ref, ids, ctx=64, max_chunks=5)
        if a["perplexity"] != b["perplexity"] or a["layers"] != b["layers"]:
            raise AssertionError(f"rank {ep.rank}: {name} perplexity {a['perplexity']!r} vs {b['perplexity']!r}")
        if name == "deepseek_v3" and ep.size == 4:  # 4 groups of 8 experts, one group per rank, top-2 groups
            limit = m.moe_layers[1].router.topk_group
            for i, st in ep.stats.items():
                if any(st["nodes_per_token"][limit + 1:]) or not any(st["nodes_per_token"][2:]):
                    raise AssertionError(f"layer {i}: a token reached more than {limit} nodes: {st['nodes_per_token']}")
        per = a["expert_parallel"]["routed_bytes"]
        full = sum(l.nbytes()["routed"] for l in ref.moe_layers.values())
        if sum(per) != full or ep.size > 1 and max(per) >= full:
            raise AssertionError(f"routed bytes per rank {per} vs {full} in one process")
    # a save_pretrained directory (INT4 blocks as saved): the packed layer is sliced, not re-read
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        MoEModel.from_pretrained(builtin.path("finegrained"), quantize="int4", progress=False).save_pretrained(tmp)
        m = MoEModel.from_pretrained(tmp, expert_parallel=ep, progress=False)
        ref = MoEModel.from_pretrained(tmp, progress=False)
        ids = np.array(ref.tokenizer.encode(builtin.heldout_text("code"))[:90], np.int64)
        same(ep, m(ids), ref(ids), "saved int4 finegrained")
    # Llama 4 (the routing weight scales the expert input), under a placement with replicas of hot experts
    cfg = presets.get("llama-4-scout").scaled(num_layers=2)
    E = cfg.num_experts
    holders = [[e % ep.size] + ([(e + 1) % ep.size] if e < 4 else []) for e in range(E)]
    ep.placements.clear()
    ep._placement_arg = ExpertPlacement(E, ep.size, holders)
    m = MoEModel.from_config(cfg, seed=3, std=0.2, expert_parallel=ep)
    ref = MoEModel.from_config(cfg, seed=3, std=0.2)
    ids = np.random.default_rng(ep.rank + 10).integers(0, cfg.vocab_size, 50)
    same(ep, m(ids), ref(ids), "llama4 with replicas")
    check_prediction(ep, m, ids, "llama4 with replicas")
    # mixtral under moepy.sim's EPLB (global form) with one replica per rank of the hottest experts
    from moepy.sim import place_experts
    ep.placements.clear()
    ep._placement_arg = place_experts(np.arange(1.0, 9.0) ** 2, ep.size, 1, ep.size, "eplb_global")
    m = MoEModel.from_pretrained(builtin.path("mixtral"), expert_parallel=ep, progress=False)
    ref = MoEModel.from_pretrained(builtin.path("mixtral"), progress=False)
    ids = np.array(ref.tokenizer.encode(builtin.heldout_text("code")), np.int64)[500 * ep.rank:500 * ep.rank + 64]
    same(ep, m(ids), ref(ids), "mixtral under eplb_global")
    check_prediction(ep, m, ids, "mixtral under eplb_global")
    print(f"OK {ep.rank}", flush=True)


def faulty(ep, scenario):
    path = builtin.path("mixtral" if scenario == "mismatch" and ep.rank == 1 else "deepseek_v3")
    if scenario == "mismatch":
        from moepy.eval.run import checkpoint_hash
        ep.check_ranks({"checkpoint_sha256": checkpoint_hash(path)})
    m = MoEModel.from_pretrained(path, expert_parallel=ep, progress=False)
    ids = np.array(m.tokenizer.encode(builtin.heldout_text("prose"))[:2000], np.int64)
    m(ids[:64])
    if ep.rank == 1:
        if scenario == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if scenario == "raise":
            raise ValueError("a fault injected on rank 1")
        if scenario == "hang":
            time.sleep(60)
    for _ in range(20):
        m(ids[:64])
    print(f"finished {ep.rank}", flush=True)


def main():
    scenario = sys.argv[1]
    ep = ExpertParallel(timeout=float(os.environ.get("EP_TIMEOUT", "60")))
    compare(ep) if scenario == "compare" else faulty(ep, scenario)
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
