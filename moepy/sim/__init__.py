"""moepy.sim: expert-placement simulation for expert-parallel MoE serving and training.

* ``Placement``            which device holds each physical expert (replicas included), devices in nodes
* ``place_experts``        the policies of ``POLICIES``: round_robin, contiguous, greedy, coactivation, eplb
                           (DeepSeek's hierarchical EPLB) and eplb_global
* ``dispatch``             one layer's all-to-all under a placement -> ``DispatchReport``: (D, D) bytes,
                           intra/inter-node bytes, tokens per device, nodes per token, drops, step time on a
                           ``Link`` (alpha-beta); ``tokens_even`` spreads tokens over devices
* ``rebalance_stream``     re-place every N steps over a stream of batches, against a static placement
* ``synthetic_routing``    routing at the shape of a preset (its own router, group-limited included) with hot
                           experts; ``load_from_experts``; moepy.sim.synthetic.coactivation_counts gives the
                           (E, E) counts the coactivation policy needs (moepy.sim's own, apart from any analysis)
Everything is NumPy, vectorised over tokens. Legend: T tokens, K top-k, E logical experts, P physical experts,
D devices, N nodes.
"""
from .dispatch import DispatchReport, Link, dispatch, jain_index, tokens_even
from .placement import Placement
from .policies import POLICIES, place_experts
from .rebalance import RebalanceResult, moved_bytes, rebalance_stream
from .synthetic import load_from_experts, popularity_offsets, synthetic_routing

__all__ = ["DispatchReport", "Link", "POLICIES", "Placement", "RebalanceResult", "dispatch", "jain_index",
           "load_from_experts", "moved_bytes", "place_experts", "popularity_offsets", "rebalance_stream",
           "synthetic_routing", "tokens_even"]
