"""Balance measures and auxiliary losses of a routing, and the auxiliary-loss-free bias update.

All functions take a `Routing` (from moepy.route) and/or logits; nothing here is trained, so the
losses are values, not gradients: what a training run would add to its loss, for comparison.
"""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

from .. import _ops
from .._inputs import as_float32, as_int
from .route import ExpertChoice, Routing


@dataclass(frozen=True)
class BalanceStats:
    """Load statistics of one routing (counts are (token, slot) pairs kept per expert)."""

    counts: np.ndarray          # (E,) int64
    fraction: np.ndarray        # (E,) float64, counts / sum
    cv: float                   # coefficient of variation of counts (std / mean)
    max_over_mean: float        # max load / mean load (1 = perfect balance)
    entropy: float              # entropy of `fraction`, in nats
    normalized_entropy: float   # entropy / log(E) (1 = uniform)
    dead_experts: int           # experts that got no token
    drop_rate: float            # dropped slots / all slots (0 when dropless)
    aux_loss: float             # Switch / Mixtral load-balancing loss, E * sum_i f_i P_i
    num_tokens: int
    num_experts: int
    top_k: int

    def __repr__(self) -> str:
        return (f"BalanceStats(T={self.num_tokens}, E={self.num_experts}, k={self.top_k}: cv {self.cv:.3f}, "
                f"max/mean {self.max_over_mean:.2f}, entropy {self.normalized_entropy:.3f} of log E, "
                f"dead {self.dead_experts}, drop {100 * self.drop_rate:.2f}%, aux loss {self.aux_loss:.4f})")

    def as_dict(self) -> dict:
        """A JSON-ready dict (arrays as lists)."""
        d = asdict(self)
        d["counts"] = self.counts.tolist()
        d["fraction"] = self.fraction.tolist()
        return d


def tokens_per_expert(routing: Routing) -> np.ndarray:
    """(E,) int64 slots kept per expert."""
    return routing.counts()


def balance_stats(routing) -> BalanceStats:
    """Every balance measure of one routing in one pass over the C load kernel. `routing` is a Routing or
    an ExpertChoice (each expert takes C tokens, so the expert load is flat by construction; its drop_rate is
    the share of tokens no expert took, top_k the largest number of experts a token got)."""
    if isinstance(routing, ExpertChoice):
        return _expert_choice_stats(routing)
    if not isinstance(routing, Routing):
        raise TypeError(f"routing must be a Routing or an ExpertChoice, got {type(routing).__name__}")
    E, T, K = routing.num_experts, routing.num_tokens, routing.top_k
    counts, _ = _ops.expert_load(routing.experts, routing.dropped, None, E)
    total = counts.sum()
    fraction = counts / total if total else np.zeros(E)
    mean = counts.mean()
    nz = fraction[fraction > 0]
    entropy = float(-(nz * np.log(nz)).sum())
    return BalanceStats(
        counts=counts,
        fraction=fraction,
        cv=float(counts.std() / mean) if mean else 0.0,
        max_over_mean=float(counts.max() / mean) if mean else 0.0,
        entropy=entropy,
        normalized_entropy=entropy / np.log(E) if E > 1 else 1.0,
        dead_experts=int((counts == 0).sum()),
        drop_rate=float(routing.dropped.mean()) if routing.dropped is not None and routing.dropped.size else 0.0,
        aux_loss=load_balancing_loss(routing),
        num_tokens=T,
        num_experts=E,
        top_k=K,
    )


def _expert_choice_stats(ec: ExpertChoice) -> BalanceStats:
    st = balance_stats(ec.to_routing())
    T, E = ec.num_tokens, ec.num_experts
    f = st.counts / T if T else np.zeros(E)
    aux = float(E * (f * ec.scores.mean(axis=0, dtype=np.float64)).sum()) if T else 0.0
    return dataclasses.replace(st, drop_rate=float((ec.coverage == 0).mean()) if T else 0.0, aux_loss=aux)


def load_balancing_loss(routing: Routing, scores: Optional[np.ndarray] = None) -> float:
    """Switch / Mixtral auxiliary loss E * sum_i f_i P_i (transformers' load_balancing_loss_func).

    f_i: the fraction of tokens that selected expert i (summed over the K slots, so sum f = K; drops
    are ignored, as in HF), P_i: the mean router probability of expert i. Pass `scores` to use other
    probabilities than routing.scores. Sigmoid scores are first normalised per token to sum 1 (as
    DeepSeek-V3's balance loss does), so the loss compares across routers. Minimum K under perfect
    balance."""
    T, E = routing.num_tokens, routing.num_experts
    if T == 0:
        return 0.0
    probs = routing.scores if scores is None else _ops.as_input(scores, "scores", np.float32, 2)
    if scores is None and routing.scoring == "sigmoid":
        probs = (probs / np.maximum(probs.sum(axis=1, keepdims=True, dtype=np.float64), 1e-30)).astype(np.float32)
    counts, prob_sum = _ops.expert_load(routing.experts, None, probs, E)
    return float(E * np.dot(counts / T, prob_sum / T))


def router_z_loss(logits: np.ndarray) -> float:
    """ST-MoE / Switch router z-loss: mean over tokens of logsumexp(logits)^2 (float64)."""
    x = as_float32(logits, "logits", (2,)).astype(np.float64)
    if x.shape[0] == 0:
        return 0.0
    m = x.max(axis=1, keepdims=True)
    lse = (m + np.log(np.exp(x - m).sum(axis=1, keepdims=True)))[:, 0]
    return float(np.mean(lse ** 2))


def sequence_aux_loss(routing: Routing, seq_len: int, alpha: float = 1.0) -> float:
    """DeepSeek-V3 complementary sequence-wise balance loss, averaged over sequences.

    Tokens are consecutive sequences of `seq_len`. Per sequence: f_i = E / (K * S) * (tokens that
    chose i), P_i = mean over the sequence of s_i / sum_j s_j (the normalised scores); loss =
    alpha * sum_i f_i P_i (1 * alpha under perfect balance)."""
    T, E, K = routing.num_tokens, routing.num_experts, routing.top_k
    seq_len = as_int(seq_len, "seq_len", lo=1)
    if T % seq_len:
        raise ValueError(f"seq_len must be >= 1 and divide the {T} tokens, got {seq_len}")
    if T == 0:
        return 0.0
    B = T // seq_len
    s = routing.scores.astype(np.float64)
    s = s / np.maximum(s.sum(axis=1, keepdims=True), 1e-30)
    P = s.reshape(B, seq_len, E).mean(axis=1)
    onehot = np.zeros((T, E))
    np.put_along_axis(onehot, routing.experts.astype(np.int64), 1.0, axis=1)
    f = onehot.reshape(B, seq_len, E).sum(axis=1) * (E / (K * seq_len))
    return float(alpha * np.mean((f * P).sum(axis=1)))


def update_bias(bias: np.ndarray, counts: np.ndarray, gamma: float = 1e-3) -> np.ndarray:
    """Auxiliary-loss-free balancing (DeepSeek-V3): b_i += gamma * sign(mean load - load_i).
    Returns a new float32 array; overloaded experts become less likely to be selected."""
    bias = _ops.as_input(bias, "bias", np.float32, 1)
    counts = np.asarray(counts)
    if counts.shape != bias.shape:
        raise ValueError(f"counts must have the shape of bias {bias.shape}, got {counts.shape}")
    step = np.sign(counts.mean() - counts.astype(np.float64))
    return (bias + np.float32(gamma) * step.astype(np.float32)).astype(np.float32)


class BiasBalancer:
    """Runs the auxiliary-loss-free bias update over a stream of batches.

    >>> bal = BiasBalancer(num_experts=256, gamma=1e-3)
    >>> for logits in batches:
    ...     r = bal.route(logits, cfg)        # routes with the current bias, then updates it
    The history of max/mean load is kept in `history`."""

    def __init__(self, num_experts: int, gamma: float = 1e-3, bias: Optional[np.ndarray] = None):
        self.bias = np.zeros(num_experts, np.float32) if bias is None else _ops.as_input(bias, "bias", np.float32, 1).copy()
        self.gamma = float(gamma)
        self.history: list[float] = []

    def update(self, routing: Routing) -> np.ndarray:
        """Move the bias by gamma * sign(mean load - load) from one batch's routing."""
        counts = routing.counts()
        mean = counts.mean()
        self.history.append(float(counts.max() / mean) if mean else 0.0)
        self.bias = update_bias(self.bias, counts, self.gamma)
        return self.bias

    def route(self, logits: np.ndarray, config) -> Routing:
        """Route one batch with the current bias, then update the bias from its load; returns the Routing."""
        from .route import route

        r = route(logits, config, bias=self.bias)
        self.update(r)
        return r
