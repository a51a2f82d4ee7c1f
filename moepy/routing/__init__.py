"""Routing: RouterConfig, route(), capacity and expert choice, balance measures and losses."""
from .config import GROUP_SCORES, PRIORITIES, SCORINGS, RouterConfig
from .metrics import BalanceStats, BiasBalancer, balance_stats, load_balancing_loss, router_z_loss, \
    sequence_aux_loss, tokens_per_expert, update_bias
from .route import ExpertChoice, Routing, apply_capacity, expert_choice, route, topk

__all__ = ["GROUP_SCORES", "PRIORITIES", "SCORINGS", "RouterConfig", "BalanceStats", "BiasBalancer", "balance_stats",
           "load_balancing_loss", "router_z_loss", "sequence_aux_loss", "tokens_per_expert", "update_bias",
           "ExpertChoice", "Routing", "apply_capacity", "expert_choice", "route", "topk"]
