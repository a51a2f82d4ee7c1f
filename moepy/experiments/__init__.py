"""Routing experiments on whole models: compare_routing runs a model once per routing scheme over a text and
tabulates perplexity, KLD against the model's own routing, balance, drops and speed (moepy.experiments.schemes:
fewer / more experts, renormalisation, capacity and token dropping, expert choice, group-limited routing, an
online auxiliary-loss-free bias, the scoring function, expert pruning by frequency or REAP saliency)."""
from .compare import RoutingComparison, applied, collect_saliency, compare_routing, observe_routing
from .schemes import Baseline, Capacity, ExpertChoiceRouting, GroupLimited, OnlineBias, Prune, Renormalize, \
    Scheme, Scoring, TopK, layer_route
from .table import Table

__all__ = ["RoutingComparison", "applied", "collect_saliency", "compare_routing", "observe_routing", "Baseline", "Capacity",
           "ExpertChoiceRouting", "GroupLimited", "OnlineBias", "Prune", "Renormalize", "Scheme", "Scoring", "TopK",
           "layer_route", "Table"]
