"""`python -m moepy simulate --model deepseek-v3 --devices 64 --nodes 8 --policy eplb --replicas 64`: expert
placement on a simulated cluster, against round_robin.

Synthetic routing at the preset's shape (its own router on skewed random logits); the placement is fitted on a
calibration batch drawn from the same distribution and measured on a separate batch. Problems with the input
print one line and exit with code 2.
"""
from __future__ import annotations

import argparse
import json
import sys


class UsageError(Exception):
    """Bad input: printed without a traceback, exit code 2."""


def _table(columns, reports) -> str:
    rows = [r.summary_rows() for r in reports]
    labels = [label for label, _ in rows[0]]
    for other in rows[1:]:  # a row only one report has (e.g. drops) shows "-" for the others
        labels += [label for label, _ in other if label not in labels]
    cells = [[dict(r).get(label, "-") for r in rows] for label in labels]
    lw = max(len(s) for s in labels)
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    out = [" " * lw + "  " + "  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    out += [label.ljust(lw) + "  " + "  ".join(v.rjust(w) for v, w in zip(row, widths))
            for label, row in zip(labels, cells)]
    return "\n".join(out)


def _parser():
    from ..sim import POLICIES
    ap = argparse.ArgumentParser(prog="python -m moepy simulate",
                                 description="Expert placement on a simulated cluster: all-to-all bytes, device "
                                             "load, nodes per token and step time of one MoE layer.")
    ap.add_argument("--model", default="deepseek-v3", help="a preset name (python -m moepy configs --list)")
    ap.add_argument("--devices", type=int, default=64, help="devices D (default 64)")
    ap.add_argument("--nodes", type=int, default=1, help="nodes N, D divisible by N (default 1)")
    ap.add_argument("--policy", default="eplb", help=f"one of {', '.join(POLICIES)} (default eplb)")
    ap.add_argument("--compare", default="round_robin", help="the baseline policy, or 'none' (default round_robin)")
    ap.add_argument("--replicas", type=int, default=0, help="extra physical experts (E + replicas divisible by D)")
    ap.add_argument("--groups", type=int, help="expert groups for eplb (default: the router's n_group when the "
                                               "nodes divide it, else every expert its own group)")
    ap.add_argument("--tokens", type=int, default=65536, help="tokens T in the measured batch (default 65536)")
    ap.add_argument("--node-limit", type=int, help="report the share of tokens visiting more than M nodes")
    ap.add_argument("--capacity-factor", type=float, help="drop slots beyond ceil(cf * T * K / P) per expert")
    ap.add_argument("--token-bytes", type=int, help="bytes per token (default hidden_size * 2, bf16)")
    ap.add_argument("--skew", type=float, default=0.5, help="Zipf exponent of the expert popularity (default 0.5)")
    ap.add_argument("--law", default="zipf", help="popularity law: zipf or lognormal")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--intra-bw", type=float, default=150e9, help="intra-node bytes/s per device (default 150e9)")
    ap.add_argument("--inter-bw", type=float, default=50e9, help="inter-node bytes/s per device (default 50e9)")
    ap.add_argument("--latency", type=float, default=5e-6, help="seconds per message (default 5e-6)")
    ap.add_argument("--json", action="store_true", help="print the reports as JSON instead of the table")
    ap.add_argument("--list-policies", action="store_true", help="print the policies and exit")
    return ap


def run(args) -> dict:
    """The simulation behind the command: {'header', 'columns', 'reports'} (raises UsageError)."""
    from .. import configs
    from ..sim import POLICIES, Link, dispatch, load_from_experts, place_experts, synthetic_routing
    from ..sim.synthetic import coactivation_counts
    try:
        cfg = configs.get(args.model)
    except KeyError as exc:
        raise UsageError(f"--model: {exc.args[0]}") from None
    for name in ("devices", "nodes", "tokens"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name} must be >= 1, got {getattr(args, name)}")
    policies = [args.policy] + ([] if args.compare in ("none", args.policy) else [args.compare])
    for flag, p in zip(("--policy", "--compare"), policies):
        if p not in POLICIES:
            raise UsageError(f"{flag} must be one of {', '.join(POLICIES)}; got {p!r}")
    groups = args.groups
    n_group = cfg.router.n_group
    if groups is None and n_group > 1 and n_group % args.nodes == 0:
        groups = n_group
    try:
        link = Link(args.intra_bw, args.inter_bw, args.latency)
        kw = dict(skew=args.skew, law=args.law, popularity_seed=args.seed)
        calibration = synthetic_routing(cfg, args.tokens, seed=args.seed + 1, **kw)
        experts = synthetic_routing(cfg, args.tokens, seed=args.seed, **kw)
        load = load_from_experts(calibration, cfg.num_experts)
        co = coactivation_counts(calibration, cfg.num_experts) if "coactivation" in policies else None
        token_bytes = cfg.hidden_size * 2 if args.token_bytes is None else args.token_bytes
        reports = []
        for p in policies:
            pl = place_experts(load, args.devices, args.nodes, args.replicas, p, coactivation=co,
                               num_groups=groups if p == "eplb" else None)
            reports.append(dispatch(experts, pl, None, token_bytes, node_limit=args.node_limit,
                                    capacity_factor=args.capacity_factor, link=link))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    header = (f"{cfg.name}: {cfg.num_experts} experts, top-{cfg.top_k}, {args.tokens:,} tokens of {token_bytes:,} B "
              f"({args.law} skew {args.skew}); {args.devices} devices in {args.nodes} nodes, {args.replicas} "
              f"replicas{f', eplb groups {groups}' if groups and 'eplb' in policies else ''}; placement fitted "
              f"on a separate calibration batch")
    return {"header": header, "columns": policies, "reports": reports}


def main(argv=None) -> int:
    """`python -m moepy simulate ...`; returns the exit code (2 on bad input)."""
    from ..sim import POLICIES
    args = _parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    if args.list_policies:
        w = max(map(len, POLICIES))
        print("\n".join(f"{k.ljust(w)}  {v}" for k, v in POLICIES.items()))
        return 0
    try:
        res = run(args)
    except UsageError as exc:
        print(f"moepy simulate: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"header": res["header"],
                          "reports": {p: r.to_dict() for p, r in zip(res["columns"], res["reports"])}}, indent=1))
    else:
        print(res["header"])
        print(_table(res["columns"], res["reports"]))
    return 0
