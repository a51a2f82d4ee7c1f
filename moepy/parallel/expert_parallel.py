"""Expert parallelism: each rank holds a share of every MoE layer's routed experts; tokens travel to them.

One MoE layer on a rank with tokens x (T, H) (its own chunk; the non-expert weights are replicated):
route (every rank routes alike: same router, same kernel) -> the dispatch plan of the C core (slots grouped by
expert) -> each token sent once to every rank that holds one of its experts (Alltoallv of rows, the slot list
beside it: the row and the receiver's local expert) -> the receiver runs its experts over what it got with the
grouped expert kernel -> each slot's output goes back (Alltoallv) -> the owner combines its tokens' slots in
ascending expert order with the C combine, plus the shared expert it computes itself. The pieces are those of
moe_forward (plan -> gather -> grouped FFN -> combine, bitwise equal to it) and a row's output does not depend
on the other rows, so logits equal one process's bit for bit, for any number of ranks and any placement.
The combine returns one row per slot, not one pre-reduced row per device: a partial sum formed on the receiver
would add the experts in another order than one process does.
"""
from __future__ import annotations

import os
import time
from typing import Dict, Optional, Sequence

import numpy as np

from .. import _ops
from ..moe.layer import MoELayer, _as_tokens
from ..moe.weights import ExpertSource
from .group import EPError, Group


class ExpertPlacement:
    """Which ranks hold which logical experts of an E-expert layer: holders[e] the ranks of expert e's copies.

    contiguous(E, R): rank r holds experts [r E / R, (r + 1) E / R) (the default). from_sim(placement): a
    moepy.sim Placement (replicas included; its devices are the ranks). `sim` is the moepy.sim Placement of the
    same layout, and a slot goes where moepy.sim.dispatch sends it (moepy.sim.dispatch.choose_physical: a copy on
    the token's own rank, else on its node, else any, each rank round-robin over its own slots), so the bytes a
    run moves are the bytes the simulator predicts for its routing."""

    def __init__(self, num_experts: int, num_ranks: int, holders: Sequence[Sequence[int]],
                 ranks_per_node: Optional[int] = None):
        self.num_experts, self.num_ranks = int(num_experts), int(num_ranks)
        if len(holders) != self.num_experts:
            raise ValueError(f"placement: {len(holders)} experts placed, the layer has {self.num_experts}")
        self.holders = [np.array(sorted(set(int(r) for r in h)), np.int64) for h in holders]
        for e, h in enumerate(self.holders):
            if h.size == 0:
                raise ValueError(f"placement: expert {e} is on no rank")
            if h.min() < 0 or h.max() >= self.num_ranks:
                raise ValueError(f"placement: expert {e} is on rank {int(h.max())}, there are {self.num_ranks} ranks")
        # local[r]: the logical experts rank r holds, ascending; local_index[r, e]: e's position there or -1
        self.local_index = np.full((self.num_ranks, self.num_experts), -1, np.int64)
        self.local = []
        for r in range(self.num_ranks):
            ids = np.array([e for e, h in enumerate(self.holders) if r in h], np.int64)
            self.local.append(ids)
            self.local_index[r, ids] = np.arange(ids.size)
        from ..sim import Placement
        self.sim = Placement.from_assignment([h.tolist() for h in self.holders], self.num_ranks,
                                             ranks_per_node or self.num_ranks)

    @classmethod
    def contiguous(cls, num_experts: int, num_ranks: int, ranks_per_node: Optional[int] = None) -> "ExpertPlacement":
        """Rank r holds the experts [r E / R, (r + 1) E / R)."""
        owner = (np.arange(num_experts) * num_ranks) // num_experts
        return cls(num_experts, num_ranks, [[int(o)] for o in owner], ranks_per_node)

    @classmethod
    def from_sim(cls, placement, num_ranks: int) -> "ExpertPlacement":
        """From a moepy.sim Placement whose devices are the ranks."""
        if placement.num_devices != num_ranks:
            raise ValueError(f"placement has {placement.num_devices} devices; the job has {num_ranks} ranks")
        holders = [[] for _ in range(placement.num_experts)]
        for e, d in zip(np.asarray(placement.phys_to_logical), np.asarray(placement.phys_to_device)):
            holders[int(e)].append(int(d))
        return cls(placement.num_experts, num_ranks, holders, placement.devices_per_node)

    @classmethod
    def round_robin(cls, num_experts: int, num_ranks: int, ranks_per_node: Optional[int] = None) -> "ExpertPlacement":
        """Expert e on rank e % R."""
        return cls(num_experts, num_ranks, [[e % num_ranks] for e in range(num_experts)], ranks_per_node)

    def to_json(self) -> dict:
        """{"num_experts", "num_ranks", "holders"}: what load_placement reads back."""
        return {"num_experts": self.num_experts, "num_ranks": self.num_ranks,
                "holders": [h.tolist() for h in self.holders]}

    def slot_ranks(self, experts: np.ndarray, rank: int) -> np.ndarray:
        """(N,) the rank each slot of logical experts (N,) (in token order within each expert) goes to from
        `rank`: moepy.sim's replica choice for a token on that rank."""
        from ..sim.dispatch import choose_physical
        experts = np.asarray(experts, np.int64)
        phys = choose_physical(experts, np.full(experts.size, rank, np.int64), self.sim)
        return np.asarray(self.sim.phys_to_device)[phys]


def load_placement(path: str):
    """A placement file: {"num_experts", "num_ranks", "holders"} (one placement for every MoE layer; see
    ExpertPlacement.to_json) or {"layers": {"<index>": that}}. Returns an ExpertPlacement or {layer: one}.
    The file is untrusted input: ValueError naming it for anything malformed."""
    import json

    def one(d, where):
        if not isinstance(d, dict) or not {"num_experts", "num_ranks", "holders"} <= set(d):
            raise ValueError(f"placement {path}: {where} needs num_experts, num_ranks and holders")
        E, R, holders = d["num_experts"], d["num_ranks"], d["holders"]
        if not (isinstance(E, int) and isinstance(R, int) and isinstance(holders, list)
                and all(isinstance(h, list) and all(isinstance(r, int) for r in h) for h in holders)):
            raise ValueError(f"placement {path}: {where}: num_experts and num_ranks are ints, holders lists of ints")
        return ExpertPlacement(E, R, holders)
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, ValueError) as exc:
        raise ValueError(f"placement {path}: cannot read it ({exc})") from None
    if isinstance(d, dict) and "layers" in d:
        if not isinstance(d["layers"], dict):
            raise ValueError(f"placement {path}: layers must map layer indices to placements")
        try:
            return {int(k): one(v, f"layer {k}") for k, v in d["layers"].items()}
        except (TypeError, ValueError) as exc:
            raise ValueError(str(exc) if str(exc).startswith("placement") else f"placement {path}: {exc}") from None
    return one(d, "the file")


class ExpertParallel:
    """Expert parallelism over an MPI communicator: `ExpertParallel(comm=None, placement=None, timeout=300)`.

    threads: "auto" (the cores this rank may use divided by the ranks on its node), an int, or None (leave
    moepy's thread count alone). ranks_per_node: how ranks group into nodes for the node measures (default: the
    ranks sharing this host); stats[layer]["nodes_per_token"] is the histogram of nodes a token's slots reach.
    placement: None or "contiguous" (contiguous blocks), "round_robin", an ExpertPlacement, a moepy.sim Placement,
    or {layer_index: any of these}.
    Pass it to MoEModel.from_pretrained(path, expert_parallel=ep) (or a bare mpi4py communicator). `stats` counts,
    per MoE layer: calls, rows and bytes this rank sent to other ranks for dispatch and combine, the seconds of
    the whole exchange (experts included) and of its collectives alone (comm_seconds)."""

    def __init__(self, comm=None, placement=None, timeout: float = 300.0, group: Optional[Group] = None,
                 threads="auto", ranks_per_node: Optional[int] = None):
        self.group = group or Group(comm, timeout)
        self.rank, self.size = self.group.rank, self.group.size
        self.ranks_per_node = int(ranks_per_node or self.group.local_size)
        if self.ranks_per_node < 1 or self.size % self.ranks_per_node:
            raise ValueError(f"ranks_per_node={self.ranks_per_node} must divide the {self.size} ranks")
        self.num_nodes = self.size // self.ranks_per_node
        if threads == "auto":  # the node's cores shared by its ranks, so they do not oversubscribe it
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
            threads = max(1, cores // self.group.local_size)
        if threads is not None:
            from .. import set_num_threads
            set_num_threads(int(threads))
        self._placement_arg = placement
        self.placements: Dict[int, ExpertPlacement] = {}
        self.stats: Dict[int, Dict[str, float]] = {}

    def placement_for(self, index: int, num_experts: int) -> ExpertPlacement:
        """The ExpertPlacement of MoE layer `index`."""
        p = self._placement_arg
        if isinstance(p, dict):
            p = p.get(index)
        if p is None or p == "contiguous":
            pl = ExpertPlacement.contiguous(num_experts, self.size, self.ranks_per_node)
        elif p == "round_robin":
            pl = ExpertPlacement.round_robin(num_experts, self.size, self.ranks_per_node)
        elif isinstance(p, ExpertPlacement):
            pl = p
        else:
            pl = ExpertPlacement.from_sim(p, self.size)
        if pl.num_experts != num_experts or pl.num_ranks != self.size:
            raise ValueError(f"placement of layer {index}: {pl.num_experts} experts on {pl.num_ranks} ranks; the layer "
                             f"has {num_experts} experts and the job {self.size} ranks")
        self.placements[index] = pl
        return pl

    def wrap(self, layer: MoELayer, index: int, dtype: str, group_size: int) -> "ExpertParallelLayer":
        """The expert-parallel form of `layer` (MoE layer `index`): this rank keeps only its experts, in dtype."""
        return ExpertParallelLayer(layer, self, index, dtype, group_size)

    # ---- the exchange of one MoE layer call
    def exchange(self, layer: "ExpertParallelLayer", x2: np.ndarray, weights: np.ndarray, experts: np.ndarray,
                 dropped: Optional[np.ndarray]) -> tuple:
        """(ys (N, H), position (T K,)): the output of every kept slot of this rank's tokens, in dispatch-plan order
        (slots grouped by expert), computed on the ranks that hold the experts, and each slot's row (-1: dropped).
        x2 (T, H); weights, experts, dropped (T, K)."""
        g, R, me = self.group, self.size, self.rank
        pl = layer.placement
        T, K = experts.shape
        H = layer.hidden_size
        st = self.stats.setdefault(layer.index, {"calls": 0, "dispatch_rows": 0, "dispatch_bytes": 0,
                                                 "combine_rows": 0, "combine_bytes": 0, "seconds": 0.0,
                                                 "comm_seconds": 0.0})
        t0, c0 = time.perf_counter(), g.comm_seconds
        if T:
            _, _, order, position = _ops.dispatch_plan(experts, dropped, pl.num_experts)
        else:
            order = np.zeros(0, np.int64)
            position = np.zeros(0, np.int64)
        N = order.size
        slot_e = experts.reshape(-1)[order].astype(np.int64)  # (N,) ascending expert
        slot_t = order // K if K else order
        dest = pl.slot_ranks(slot_e, me)  # (N,)
        by_dest = np.argsort(dest, kind="stable")  # slots grouped by rank, expert order kept within
        d_sorted = dest[by_dest]
        slot_counts = np.bincount(d_sorted, minlength=R)
        if layer.scale_input:  # Llama 4 scales each slot's input: one row per slot
            rows = _ops.gather(x2, order[by_dest], K, weights) if N else np.zeros((0, H), np.float32)
            row_of_slot = np.arange(N) - np.repeat(_starts(slot_counts), slot_counts)
            row_counts = slot_counts
        else:  # one row per (token, rank)
            key = d_sorted * max(T, 1) + slot_t[by_dest]
            uniq, inv = np.unique(key, return_inverse=True)
            row_counts = np.bincount(uniq // max(T, 1), minlength=R)
            rows = x2[uniq % max(T, 1)] if uniq.size else np.zeros((0, H), np.float32)
            row_of_slot = inv - np.repeat(_starts(row_counts), slot_counts)
        meta = np.stack([row_of_slot, pl.local_index[d_sorted, slot_e[by_dest]]], axis=1).astype(np.int32) if N \
            else np.zeros((0, 2), np.int32)
        # nodes each token's slots reach (ranks grouped into nodes of ranks_per_node): the node limit's measure
        node_tok = np.unique((d_sorted // self.ranks_per_node) * max(T, 1) + slot_t[by_dest])
        per_token = np.bincount(node_tok % max(T, 1), minlength=T) if T else np.zeros(0, np.int64)
        hist = np.bincount(per_token, minlength=self.num_nodes + 1)
        st["nodes_per_token"] = (np.asarray(st.get("nodes_per_token", 0)) + hist).tolist()
        counts = g.alltoall(np.stack([row_counts, slot_counts], axis=1), f"layer {layer.index} counts")
        recv_rows = g.alltoallv(rows.astype(np.float32, copy=False), row_counts, counts[:, 0],
                                f"layer {layer.index} dispatch")
        recv_meta = g.alltoallv(meta, slot_counts, counts[:, 1], f"layer {layer.index} slot list")
        # run this rank's experts over what it received, grouped by local expert (source order kept within)
        src_row0 = np.repeat(_starts(counts[:, 0]), counts[:, 1])
        row = recv_meta[:, 0].astype(np.int64) + src_row0
        local_e = recv_meta[:, 1].astype(np.int64)
        grp = np.argsort(local_e, kind="stable")
        n_local = pl.local[me].size
        out_rows = np.zeros((local_e.size, H), np.float32)
        if local_e.size:
            offs = np.concatenate([[0], np.cumsum(np.bincount(local_e, minlength=n_local))]).astype(np.int64)
            out_rows[grp] = _ops.grouped_ffn(np.ascontiguousarray(recv_rows[row[grp]]), offs, layer._local)
        back = g.alltoallv(out_rows, counts[:, 1], slot_counts, f"layer {layer.index} combine")
        ys = np.empty((N, H), np.float32)
        ys[by_dest] = back
        st["seconds"] += time.perf_counter() - t0
        st["comm_seconds"] += g.comm_seconds - c0
        st["calls"] += 1
        other = np.arange(R) != me
        st["dispatch_rows"] += int(row_counts[other].sum())
        st["dispatch_bytes"] += int(row_counts[other].sum()) * H * 4
        st["combine_rows"] += int(counts[other, 1].sum())
        st["combine_bytes"] += int(counts[other, 1].sum()) * H * 4
        return ys, position

    def check_ranks(self, identity: dict) -> None:
        """EPError on every rank unless every rank reports the same identity (moepy version, checkpoint hash,
        settings): called once at start-up."""
        every = self.group.allgather_json(identity, "start-up check")
        bad = [r for r, other in enumerate(every) if other != every[0]]
        if bad:
            diff = sorted(k for k in set(every[0]) | set(every[bad[0]]) if every[0].get(k) != every[bad[0]].get(k))
            raise EPError(f"ranks disagree at start-up: rank {bad[0]} differs from rank 0 in {', '.join(diff)} "
                          f"({every[bad[0]]} vs {every[0]})")


class ExpertParallelLayer(MoELayer):
    """An MoELayer whose routed experts live across the ranks: this rank packs only its own (`local_ids`); the
    router, the shared expert and its gate are replicated. Called like an MoELayer; every rank must call its
    layers in the same order (each call is a collective)."""

    def __init__(self, layer: MoELayer, ep: ExpertParallel, index: int, dtype: str, group_size: int):
        self.__dict__.update({k: v for k, v in layer.__dict__.items()})
        self.index, self.ep = index, ep
        E = layer.num_experts
        self.placement = ep.placement_for(index, E)
        self.local_ids = self.placement.local[ep.rank]
        self._local = _local_experts(layer, self.local_ids, dtype, group_size)
        self._routed = None
        self.dtype, self.group_size = dtype, group_size
        self._E = E
        self._init_args = None

    @property
    def num_experts(self) -> int:
        """E, the layer's routed experts (all ranks together)."""
        return self._E

    def __reduce__(self):
        raise TypeError("an ExpertParallelLayer belongs to its MPI job and cannot be pickled")

    def nbytes(self) -> dict:
        """Bytes of the packed weights on this rank: its routed experts, the shared expert, the router."""
        shared = 0 if self._shared is None else self._shared.nbytes
        routed = 0 if self._local is None else self._local.nbytes
        return {"routed": routed, "shared": shared, "router": self.router_weight.nbytes,
                "per_expert": routed // max(self.local_ids.size, 1)}

    def quantize(self, *args, **kwargs):
        raise TypeError("quantize an expert-parallel model at load time (from_pretrained(quantize=...))")

    def __call__(self, x: np.ndarray, return_routing: bool = False, out: Optional[np.ndarray] = None):
        """As MoELayer.__call__; the routed experts run where they live."""
        x = _as_tokens(x, self.hidden_size)
        x2 = x.reshape(-1, self.hidden_size)
        routing, gate = self._routing_and_gate(x, x2)
        y = self._combine(x2, routing, gate)
        self.last_routing = routing
        y = y.reshape(x.shape)
        if out is not None:
            out[...] = y
            y = out
        return (y, routing) if return_routing else y

    def _combine(self, x2, routing, gate) -> np.ndarray:
        T = x2.shape[0]
        weights = np.ascontiguousarray(routing.weights, np.float32)
        experts = np.ascontiguousarray(routing.experts, np.int32)
        dropped = None if routing.dropped is None else np.ascontiguousarray(routing.dropped)
        ys, position = self.ep.exchange(self, x2, weights, experts, dropped)
        shared_y = None
        if self._shared is not None:
            shared_y = _ops.grouped_ffn(x2, np.array([0, T], np.int64), self._shared)
        return _ops.combine(ys, position, experts, weights, self.scale_input, shared_y, gate)

    def idle(self) -> None:
        """Take part in this layer's exchange with no tokens of this rank's own (a rank without a chunk)."""
        K = self.router.top_k
        self.ep.exchange(self, np.zeros((0, self.hidden_size), np.float32), np.zeros((0, K), np.float32),
                         np.zeros((0, K), np.int32), None)

    def run_experts(self, *args, **kwargs):
        raise TypeError("run_experts needs every expert on one rank; an expert-parallel layer spreads them")

    def forward_expert_choice(self, *args, **kwargs):
        raise TypeError("expert choice needs every expert on one rank; an expert-parallel layer spreads them")


def _starts(counts: np.ndarray) -> np.ndarray:
    """(n,) where each of n consecutive blocks of these sizes starts."""
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)


def _local_experts(layer: MoELayer, ids: np.ndarray, dtype: str, group_size: int) -> "_ops.PackedExperts":
    """The packed experts `ids` of layer: read from the checkpoint source alone when the layer's experts are one
    (nothing else is read or packed), else sliced from its packed experts (expert-major buffers)."""
    ex = layer.experts
    if ids.size == 0:
        return None  # this rank holds none of the layer's experts
    if isinstance(ex, ExpertSource):
        return _source_subset(ex, ids).packed(dtype, group_size)
    p = layer._routed
    if p is None:
        raise EPError("the layer's experts are neither a checkpoint source nor packed")
    if dtype != layer.dtype:
        raise EPError(f"the layer is packed as {layer.dtype}; expert parallelism cannot convert it to {dtype}")
    E = p.E

    def take(a):
        if a is None:
            return None
        per = a.size // E
        return np.ascontiguousarray(a.reshape(E, per)[ids].reshape(-1))
    return p._replace(E=int(ids.size), w_in=take(p.w_in), w_out=take(p.w_out), b_in=take(p.b_in),
                      b_out=take(p.b_out))


def _source_subset(src: ExpertSource, ids: np.ndarray) -> ExpertSource:
    ids = [int(i) for i in ids]
    get = src._get
    pick = lambda f: None if f is None else (lambda e: f(ids[e]))  # noqa: E731
    sl = lambda b: None if b is None else np.ascontiguousarray(np.asarray(b)[ids])  # noqa: E731
    return ExpertSource(len(ids), pick(get["up"]), pick(get["down"]), pick(get["gate"]),
                        gate_bias=sl(src.gate_bias), up_bias=sl(src.up_bias), down_bias=sl(src.down_bias),
                        activation=src.activation, alpha=src.alpha, limit=src.limit, bf16=src.bf16)
