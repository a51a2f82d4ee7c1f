"""place_experts(): the placement policies (round_robin, contiguous, greedy, coactivation, eplb, eplb_global).

Legend: E logical experts, P = E + num_replicas physical slots, D devices, N nodes, P / D slots per device.
Every policy fills every slot (equal expert count per device) and never puts two replicas of one expert on
one device. Replicas go to the hottest experts (the largest load per replica first; EPLB's rule) for every
policy; the policies differ in where the physical experts go.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .packing import pack, replicate_hottest
from .placement import Placement, _check_int

POLICIES = {
    "round_robin": "physical expert i on device i % D (physical experts numbered expert by expert, replicas "
                   "next to each other); load-blind",
    "contiguous": "experts in contiguous blocks: expert e on device e * D // E (the usual expert-parallel "
                  "layout); replicas packed onto the free slots, least-loaded device first; load-blind apart "
                  "from the replicas",
    "greedy": "longest processing time: physical experts by load descending onto the least-loaded device "
              "with a free slot (replicas of the hottest experts first); node-blind",
    "coactivation": "replicas of the hottest experts (one per node at most); physical experts by load "
                    "descending, each to the node whose experts it co-activates with most while that node stays "
                    "within 10% of the mean node load (else the least-loaded node); then onto the node's devices "
                    "by load (with one node: the same rule between devices); needs the (E, E) co-activation "
                    "counts",
    "eplb": "DeepSeek EPLB, hierarchical: expert groups packed onto nodes by group load, hottest experts "
            "replicated within each node, physical experts packed onto the node's devices",
    "eplb_global": "DeepSeek EPLB, global: hottest experts replicated over all experts, then packed onto all "
                   "devices (what eplb does with one node; the same as greedy)",
}


def _hierarchical(load, E, D, N, P, num_groups):
    """(P,) logical, (P,) device for hierarchical EPLB."""
    dpn = D // N
    per_node_slots = P // N
    G = num_groups  # step 1: groups of E // G consecutive experts onto nodes, balanced by group load
    group_load = load.reshape(G, E // G).sum(1)  # (G,)
    group_node = pack(group_load, np.arange(G), N, G // N)  # (G,)
    expert_node = np.repeat(group_node, E // G)  # (E,)
    p2l, p2d = [], []
    for node in range(N):
        experts = np.flatnonzero(expert_node == node)  # (E / N,)
        # step 2: replicate the node's hottest experts into its P / N slots (at most one copy per device)
        counts = replicate_hottest(load[experts], per_node_slots, dpn)
        logical = np.repeat(experts, counts)  # (P / N,)
        weight = np.repeat(load[experts] / counts, counts)
        # step 3: the node's physical experts onto its devices, balanced, P / D each
        dev = pack(weight, np.repeat(np.arange(experts.size), counts), dpn, P // D)
        p2l.append(logical)
        p2d.append(node * dpn + dev)
    return np.concatenate(p2l), np.concatenate(p2d)


def _coactivation(load, coactivation, E, D, N, P):
    """(P,) logical, (P,) device: replicas of the hottest experts (at most one per node; one node: per device),
    physical experts onto nodes by co-activation under the balance limit, then onto each node's devices by
    load."""
    dpn = D // N
    counts = replicate_hottest(load, P, N if N > 1 else D)  # (E,)
    p2l = np.repeat(np.arange(E), counts)  # (P,)
    weight = np.repeat(load / counts, counts)
    if N == 1:  # one node: the same rule between devices (a token is sent once per device)
        return p2l, pack(weight, p2l, D, P // D, coactivation=coactivation)
    node = pack(weight, p2l, N, P // N, coactivation=coactivation)  # (P,)
    p2d = np.empty(P, np.int64)
    for n in range(N):
        mine = np.flatnonzero(node == n)
        p2d[mine] = n * dpn + pack(weight[mine], p2l[mine], dpn, P // D)
    return p2l, p2d


def place_experts(load, num_devices: int, num_nodes: int = 1, num_replicas: int = 0, policy: str = "greedy",
                  coactivation=None, num_groups: Optional[int] = None,
                  slots_per_device: Optional[int] = None) -> Placement:
    """Place E logical experts (and num_replicas extra copies of the hottest ones) on num_devices devices in
    num_nodes nodes, given their load (E,) (slots routed to each; np.ones(E) when unknown: the load-blind
    policies use it only to choose which experts to replicate). Returns a Placement; see POLICIES for what each policy does.

    P = E + num_replicas physical slots must be divisible by num_devices (P / D slots per device);
    slots_per_device, if given, fixes P = slots_per_device * D (and num_replicas = P - E).
    coactivation (E, E): co-activation counts (tokens routing to both experts; moepy.sim.synthetic.
    coactivation_counts), for policy="coactivation".
    num_groups: for "eplb", the expert groups kept together on a node (E divisible by it, it divisible by
    num_nodes; e.g. DeepSeek-V3's 8 routing groups); default E (every expert its own group).
    Raises ValueError naming the argument: fewer device slots than experts, more replicas of an expert than
    devices (per node for the hierarchical policies), an unknown policy, groups that do not divide, ...
    """
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}; got {policy!r}")
    if load is None:
        raise ValueError("load is needed (pass np.ones(E) for a uniform load)")
    load = np.asarray(load, dtype=np.float64)
    if load.ndim != 1 or load.size == 0:
        raise ValueError(f"load must be a non-empty (E,) array, got shape {load.shape}")
    if not np.isfinite(load).all() or (load < 0).any():
        raise ValueError("load must be finite and >= 0")
    E = load.size
    D = _check_int(num_devices, "num_devices")
    N = _check_int(num_nodes, "num_nodes")
    if D % N:
        raise ValueError(f"num_devices={D} is not divisible by num_nodes={N}")
    R = _check_int(num_replicas, "num_replicas", 0)
    if slots_per_device is not None:
        spd = _check_int(slots_per_device, "slots_per_device")
        if spd * D < E:
            raise ValueError(f"slots_per_device={spd} x num_devices={D} = {spd * D} device slots are fewer than "
                             f"the {E} experts")
        if R and R != spd * D - E:
            raise ValueError(f"num_replicas={R} contradicts slots_per_device={spd} ({spd * D - E} replicas)")
        R = spd * D - E
    P = E + R
    if P < D:
        raise ValueError(f"num_devices={D}: fewer device slots than devices: E + num_replicas = {P} physical "
                         f"experts cannot give every device one (add replicas or use fewer devices)")
    if P % D:
        raise ValueError(f"num_replicas={R}: E + num_replicas = {P} physical experts is not divisible by "
                         f"num_devices={D}")
    spd = P // D
    if spd > E:
        raise ValueError(f"num_replicas={R}: {spd} slots per device but only {E} experts (a device holds one "
                         f"replica of an expert at most; more replicas of an expert than devices)")
    if policy == "eplb" and N > 1 and E % N:
        raise ValueError(f"num_nodes={N} does not divide the {E} experts (policy 'eplb' places E / N "
                         f"experts per node)")
    if policy == "eplb" and N > 1 and P // N > (E // N) * (D // N):
        raise ValueError(f"num_replicas={R}: policy 'eplb' replicates within a node; {P // N} slots per node "
                         f"need more replicas of an expert than the {D // N} devices of a node")
    if policy == "coactivation" and N > 1 and P > E * N:
        raise ValueError(f"num_replicas={R}: policy 'coactivation' keeps one replica of an expert per node; "
                         f"{P} slots need more than {N} nodes")
    if policy == "coactivation":
        if coactivation is None:
            raise ValueError("coactivation: policy 'coactivation' needs the (E, E) co-activation counts")
        coactivation = np.asarray(coactivation, dtype=np.float64)
        if coactivation.shape != (E, E):
            raise ValueError(f"coactivation must have shape ({E}, {E}), got {coactivation.shape}")
        p2l, p2d = _coactivation(load, coactivation, E, D, N, P)
    elif policy == "eplb":
        G = E if num_groups is None else _check_int(num_groups, "num_groups")
        if E % G:
            raise ValueError(f"num_groups={G} does not divide num_experts={E}")
        if G % N:
            raise ValueError(f"num_groups={G} is not divisible by num_nodes={N} (hierarchical EPLB packs whole "
                             f"groups onto nodes; use policy='eplb_global')")
        p2l, p2d = _hierarchical(load, E, D, N, P, G)
    else:
        counts = replicate_hottest(load, P, D)  # (E,)
        p2l = np.repeat(np.arange(E), counts)  # (P,) replicas next to each other
        weight = np.repeat(load / counts, counts)
        if policy == "round_robin":
            p2d = np.arange(P) % D
        elif policy == "contiguous":
            first = np.concatenate([[0], np.cumsum(counts)[:-1]])  # the first physical expert of each expert
            fixed = np.full(P, -1, np.int64)
            fixed[first] = np.arange(E) * D // E
            p2d = pack(weight, p2l, D, spd, fixed=fixed)
        else:  # greedy, eplb_global
            p2d = pack(weight, p2l, D, spd)
    order = np.lexsort((p2l, p2d))  # physical experts numbered device by device
    return Placement(E, D, D // N, p2l[order], p2d[order])
