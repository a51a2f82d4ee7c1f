"""dispatch(): the all-to-all traffic, device loads, nodes per token, drops and step time of one MoE layer's
routing under a Placement.

Legend: T tokens, K experts per token, S = T * K slots, E logical experts, P physical experts, D devices,
N nodes. Everything is vectorised over slots: the destination device of every slot, each row sorted to count
distinct devices and nodes, one np.bincount over src * D + dst for the (D, D) byte matrix.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .placement import Placement, _as_int_array, _check_int


@dataclass(frozen=True)
class Link:
    """The alpha-beta model of the interconnect: intra_node_bw and inter_node_bw in bytes/s (defaults: NVLink
    150e9, InfiniBand 50e9 per device), latency in seconds per message (default 5e-6)."""

    intra_node_bw: float = 150e9
    inter_node_bw: float = 50e9
    latency: float = 5e-6

    def __post_init__(self):
        for name in ("intra_node_bw", "inter_node_bw"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        if not (isinstance(self.latency, (int, float)) and math.isfinite(self.latency) and self.latency >= 0):
            raise ValueError(f"latency must be a finite number >= 0, got {self.latency!r}")


def tokens_even(num_tokens: int, num_devices: int) -> np.ndarray:
    """(T,) int64 the device of each token with tokens spread evenly in contiguous blocks (token t on device
    t * D // T, as a data-parallel batch is split)."""
    T = _check_int(num_tokens, "num_tokens", 0)
    D = _check_int(num_devices, "num_devices")
    return np.arange(T, dtype=np.int64) * D // max(T, 1)


def jain_index(x) -> float:
    """Jain's fairness index (sum x)^2 / (n sum x^2): 1 when all equal, 1/n when one holds everything
    (1 for an all-zero x)."""
    x = np.asarray(x, dtype=np.float64)
    sq = float((x * x).sum())
    return 1.0 if sq == 0 else float(x.sum()) ** 2 / (x.size * sq)


def _rank_in_group(key: np.ndarray) -> np.ndarray:
    """(n,) the position of each element among the elements with the same key, in array order."""
    order = np.argsort(key, kind="stable")
    sk = key[order]
    starts = np.flatnonzero(np.concatenate([[True], sk[1:] != sk[:-1]]))
    run = np.diff(np.concatenate([starts, [key.size]]))
    rank = np.empty(key.size, np.int64)
    rank[order] = np.arange(key.size) - np.repeat(starts, run)
    return rank


def choose_physical(experts_flat: np.ndarray, src_flat: np.ndarray, placement: Placement) -> np.ndarray:
    """(S,) the physical expert each slot uses: the replica on the token's own device if there is one, else
    one on its node, else any; among the c replicas of that nearest tier, each source device spreads its own
    slots round-robin in token order, starting at its device index (its j-th slot of expert e takes candidate
    (j + device) % c: the least-loaded choice a device can make alone, when every token counts one). A device
    needs nothing but its own routing to choose: moepy.parallel's ranks choose the same way."""
    pl = placement
    E, D, N = pl.num_experts, pl.num_devices, pl.num_nodes
    counts = pl.replica_counts()  # (E,)
    p2l, p2d, p2n = pl.phys_to_logical, pl.phys_to_device, pl.phys_to_node
    by_logical = np.lexsort((p2d, p2l))  # (P,) physical ids sorted by (logical, device), hence (logical, node)
    if (counts == 1).all():
        return by_logical[experts_flat]
    first_of = np.concatenate([[0], np.cumsum(counts)[:-1]])  # (E,) start of each expert in by_logical
    want = experts_flat * D + src_flat  # (S,) (expert, own device) keys
    if E * D <= 1 << 26:  # a dense (E * D,) table of the replica on each device
        table = np.full(E * D, -1, np.int64)
        table[p2l * D + p2d] = np.arange(p2l.size)
        phys = table[want]
    else:
        key_ld = (p2l * D + p2d)[by_logical]  # sorted
        pos = np.minimum(np.searchsorted(key_ld, want), key_ld.size - 1)
        phys = np.where(key_ld[pos] == want, by_logical[pos], -1)
    del want
    miss = np.flatnonzero(phys < 0)  # no replica on the token's own device
    e = experts_flat[miss]
    one = counts[e] == 1
    phys[miss[one]] = by_logical[first_of[e[one]]]
    miss, e = miss[~one], e[~one]
    if miss.size:
        en = e * N + src_flat[miss] // pl.devices_per_node  # (expert, own node) keys
        on_node_count = np.bincount(p2l * N + p2n, minlength=E * N)  # (E * N,) replicas of e on node n
        on_node_start = np.concatenate([[0], np.cumsum(on_node_count)[:-1]])
        cands = on_node_count[en]
        on_node = cands > 0
        start = np.where(on_node, on_node_start[en], first_of[e])
        cands = np.where(on_node, cands, counts[e])
        group = np.where(on_node, en, E * N + e)  # the any-replica tier's keys after every (e, n) key
        src = src_flat[miss]
        phys[miss] = by_logical[start + (_rank_in_group(group * D + src) + src) % cands]
    return phys


@dataclass(eq=False)
class DispatchReport:
    """The traffic and load of one layer's dispatch (tokens to experts) and combine (back).

    bytes (D, D) int64: source x destination bytes, a token counted once per destination device it visits
    (DeepEP's convention); combine_bytes is its transpose. local_bytes: the diagonal (a device to itself, no
    link); intra_node_bytes / inter_node_bytes: the off-diagonal bytes within / between nodes.
    tokens_per_device (D,): expert slots each device computes (after drops); max_tokens, mean_tokens, jain.
    nodes_per_token (N + 1,): histogram of the distinct destination nodes of a token (its own node included
    when one of its experts is there). over_node_limit: the share of tokens visiting more than node_limit nodes.
    dropped: slots refused by the capacity limit (capacity per physical expert, in token order).
    step_time(link): the alpha-beta estimate of dispatch + combine.
    """

    num_tokens: int
    top_k: int
    token_bytes: int
    placement: Placement
    bytes: np.ndarray
    tokens_per_device: np.ndarray
    nodes_per_token: np.ndarray
    node_limit: Optional[int] = None
    capacity: Optional[int] = None
    dropped: int = 0
    link: Link = field(default_factory=Link)
    _send: tuple = field(default=(), repr=False)
    _recv: tuple = field(default=(), repr=False)

    def __post_init__(self):
        pl, M = self.placement, self.bytes
        N, dpn = pl.num_nodes, pl.devices_per_node
        off = M.copy()
        np.fill_diagonal(off, 0)
        blocks = off.reshape(N, dpn, N, dpn)[np.arange(N), :, np.arange(N), :]  # (N, dpn, dpn) within nodes
        intra_send, intra_recv = blocks.sum(2).ravel(), blocks.sum(1).ravel()  # (D,)
        self._send = (intra_send, off.sum(1) - intra_send, (off > 0).sum(1))
        self._recv = (intra_recv, off.sum(0) - intra_recv, (off > 0).sum(0))

    @property
    def combine_bytes(self) -> np.ndarray:
        """(D, D) the combine's bytes: the dispatch's transpose (results return to the tokens' devices)."""
        return self.bytes.T

    @property
    def local_bytes(self) -> int:
        """Bytes a device sends to itself (the diagonal)."""
        return int(np.trace(self.bytes))

    @property
    def intra_node_bytes(self) -> int:
        """Off-diagonal bytes between devices of one node."""
        return int(self._send[0].sum())

    @property
    def inter_node_bytes(self) -> int:
        """Bytes between nodes."""
        return int(self._send[1].sum())

    @property
    def max_tokens(self) -> int:
        """The largest tokens_per_device."""
        return int(self.tokens_per_device.max())

    @property
    def mean_tokens(self) -> float:
        """The mean of tokens_per_device."""
        return float(self.tokens_per_device.mean())

    @property
    def imbalance(self) -> float:
        """max_tokens / mean_tokens (1 = balanced)."""
        return self.max_tokens / self.mean_tokens if self.mean_tokens else 1.0

    @property
    def jain(self) -> float:
        """Jain's fairness index of tokens_per_device."""
        return jain_index(self.tokens_per_device)

    @property
    def nodes_per_token_mean(self) -> float:
        """The mean number of distinct nodes a token visits."""
        h = self.nodes_per_token
        return float((h * np.arange(h.size)).sum() / max(h.sum(), 1))

    @property
    def over_node_limit(self) -> Optional[float]:
        """The share of tokens visiting more than node_limit nodes (None without a node_limit)."""
        if self.node_limit is None:
            return None
        return float(self.nodes_per_token[self.node_limit + 1:].sum() / max(self.num_tokens, 1))

    @property
    def dropped_share(self) -> float:
        """dropped / (T * K)."""
        return self.dropped / max(self.num_tokens * self.top_k, 1)

    def _time(self, side, link: Link) -> np.ndarray:
        intra, inter, messages = side
        return link.latency * messages + intra / link.intra_node_bw + inter / link.inter_node_bw

    def dispatch_time(self, link: Optional[Link] = None) -> float:
        """Seconds for the dispatch: per device latency x messages + intra bytes / intra bw + inter bytes /
        inter bw, for sending and for receiving; the slowest device's larger of the two."""
        link = self.link if link is None else link
        return float(max(self._time(self._send, link).max(initial=0), self._time(self._recv, link).max(initial=0)))

    def step_time(self, link: Optional[Link] = None) -> float:
        """Seconds for dispatch + combine (the combine is the transpose: the same time)."""
        return 2.0 * self.dispatch_time(link)

    def summary_rows(self) -> list:
        """(label, value) pairs of the readable summary."""
        h = self.nodes_per_token
        hist = " ".join(f"{i}:{int(c)}" for i, c in enumerate(h) if c)
        rows = [("bytes intra-node (GB)", f"{self.intra_node_bytes / 1e9:.3f}"),
                ("bytes inter-node (GB)", f"{self.inter_node_bytes / 1e9:.3f}"),
                ("bytes local (GB)", f"{self.local_bytes / 1e9:.3f}"),
                ("tokens/device max / mean", f"{self.max_tokens} / {self.mean_tokens:.1f}"),
                ("max / mean", f"{self.imbalance:.3f}"),
                ("Jain fairness", f"{self.jain:.4f}"),
                ("nodes/token mean", f"{self.nodes_per_token_mean:.3f}"),
                ("nodes/token histogram", hist)]
        if self.node_limit is not None:
            rows.append((f"tokens over {self.node_limit} nodes", f"{100 * self.over_node_limit:.2f}%"))
        if self.capacity is not None:
            rows.append((f"dropped (capacity {self.capacity})", f"{self.dropped} ({100 * self.dropped_share:.2f}%)"))
        rows.append(("step time est. (ms)", f"{1e3 * self.step_time():.3f}"))
        return rows

    def to_dict(self) -> dict:
        """The summary as JSON-ready numbers (the (D, D) matrix left out)."""
        return {"num_tokens": self.num_tokens, "top_k": self.top_k, "token_bytes": self.token_bytes,
                "num_experts": self.placement.num_experts, "num_physical": self.placement.num_physical,
                "num_devices": self.placement.num_devices, "num_nodes": self.placement.num_nodes,
                "intra_node_bytes": self.intra_node_bytes, "inter_node_bytes": self.inter_node_bytes,
                "local_bytes": self.local_bytes, "max_tokens": self.max_tokens, "mean_tokens": self.mean_tokens,
                "imbalance": self.imbalance, "jain": self.jain,
                "nodes_per_token": self.nodes_per_token.tolist(), "nodes_per_token_mean": self.nodes_per_token_mean,
                "node_limit": self.node_limit, "over_node_limit": self.over_node_limit, "capacity": self.capacity,
                "dropped": self.dropped, "step_time_s": self.step_time(),
                "link": {"intra_node_bw": self.link.intra_node_bw, "inter_node_bw": self.link.inter_node_bw,
                         "latency": self.link.latency}}

    def __str__(self) -> str:
        pl = self.placement
        head = (f"dispatch of {self.num_tokens:,} tokens x top-{self.top_k} ({self.token_bytes:,} B each) over "
                f"{pl.num_experts} experts ({pl.num_physical} physical) on {pl.num_devices} devices in "
                f"{pl.num_nodes} nodes")
        rows = self.summary_rows()
        w = max(len(r[0]) for r in rows)
        return "\n".join([head] + [f"  {a.ljust(w)}  {b}" for a, b in rows])

    __repr__ = __str__


def dispatch(experts, placement: Placement, token_device=None, token_bytes: int = 1, *,
             node_limit: Optional[int] = None, capacity_factor: Optional[float] = None,
             link: Optional[Link] = None) -> DispatchReport:
    """Simulate one layer's dispatch of routed tokens under `placement`.

    experts (T, K) int: the logical experts of each token (a routing's `experts`).
    token_device (T,) int: the device each token lives on (default tokens_even(T, D)).
    token_bytes: bytes of one token's hidden state (e.g. hidden_size * 2 in bf16).
    node_limit: report the share of tokens visiting more than this many nodes (DeepSeek-V3's M = 4);
    at most the node count.
    capacity_factor: drop slots beyond ceil(capacity_factor * T * K / P) per physical expert, in token order;
    dropped slots are neither sent nor computed.
    link: the Link for step_time() (default Link()).
    Replicas: see choose_physical (own device, then own node, then any; round-robin by token order).
    """
    if not isinstance(placement, Placement):
        raise TypeError(f"placement must be a Placement, got {type(placement).__name__}")
    pl = placement
    D, N = pl.num_devices, pl.num_nodes
    experts = _as_int_array(experts, "experts", 2)  # (T, K)
    T, K = experts.shape
    if experts.size and (experts.min() < 0 or experts.max() >= pl.num_experts):
        raise ValueError(f"experts: ids must be in [0, {pl.num_experts}), got [{experts.min()}, {experts.max()}]")
    src = tokens_even(T, D) if token_device is None else _as_int_array(token_device, "token_device")  # (T,)
    if src.shape != (T,):
        raise ValueError(f"token_device must have shape ({T},), got {src.shape}")
    if T and (src.min() < 0 or src.max() >= D):
        raise ValueError(f"token_device: devices must be in [0, {D}), got [{src.min()}, {src.max()}]")
    token_bytes = _check_int(token_bytes, "token_bytes", 0)
    if node_limit is not None:
        node_limit = _check_int(node_limit, "node_limit")
        if node_limit > N:
            raise ValueError(f"node_limit={node_limit} is larger than the node count {N}")
    link = Link() if link is None else link
    if not isinstance(link, Link):
        raise TypeError(f"link must be a Link, got {type(link).__name__}")

    src_slot = np.repeat(src, K)  # (S,)
    phys = choose_physical(experts.reshape(-1), src_slot, pl)  # (S,)
    dst = pl.phys_to_device[phys]  # (S,)
    capacity, dropped = None, 0
    if capacity_factor is not None:
        if not (isinstance(capacity_factor, (int, float)) and math.isfinite(capacity_factor) and capacity_factor > 0):
            raise ValueError(f"capacity_factor must be a finite number > 0, got {capacity_factor!r}")
        capacity = math.ceil(capacity_factor * T * K / pl.num_physical)
        drop = _rank_in_group(phys) >= capacity
        dropped = int(drop.sum())
        dst = np.where(drop, -1, dst)
    dst = np.sort(dst.reshape(T, K), axis=1)  # (T, K), dropped (-1) first
    new = np.ones((T, K), bool)
    new[:, 1:] = dst[:, 1:] != dst[:, :-1]
    new &= dst >= 0  # the first slot of each distinct destination device of a token
    pair = src_slot.reshape(T, K)[new] * D + dst[new]
    matrix = np.bincount(pair, minlength=D * D).reshape(D, D) * token_bytes  # (D, D)
    kept = dst[dst >= 0]
    tokens_per_device = np.bincount(kept, minlength=D)  # (D,)
    node = np.where(dst >= 0, dst // pl.devices_per_node, -1)  # (T, K), sorted per row as dst is
    new_node = np.ones((T, K), bool)
    new_node[:, 1:] = node[:, 1:] != node[:, :-1]
    nodes = (new_node & (node >= 0)).sum(1)  # (T,)
    hist = np.bincount(nodes, minlength=N + 1)  # (N + 1,)
    return DispatchReport(T, K, token_bytes, pl, matrix, tokens_per_device, hist, node_limit, capacity, dropped, link)
