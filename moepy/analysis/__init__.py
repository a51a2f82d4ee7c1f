"""Routing analyses on router traces of a text: record a Trace (per MoE layer, each token's experts, weights and
scores), measure load and balance, co-activation, cross-layer transitions, consecutive-token expert reuse
(Mixtral, section 5), vocabulary and domain specialization and router agreement (OLMoE), coverage; plot them
(matplotlib, pip install "moepy[plots]") and colour a text by expert (tokens_html).

    from moepy.analysis import record_trace, consecutive_same_expert
    trace = record_trace(model, {"prose": text1, "code": text2}, ctx=512)
    trace.save("run.npz"); trace = Trace.load("run.npz")
    consecutive_same_expert(trace).first      # (L,) beside .random_first = 1/E
"""
from .trace import Trace, model_fingerprint, tokenizer_sha256
from .record import record_trace
from .measures import (Agreement, Balance, Consecutive, DomainSpecialization, TopTokens, VocabSpecialization,
                       balance, coactivation, consecutive_pairs, consecutive_same_expert, coverage_curve, cross_layer,
                       domain_specialization, load, router_agreement, top_tokens, vocab_specialization)
from .html import TokensHTML, expert_colors, tokens_html
from .plots import plot_coactivation, plot_coverage, plot_domain_specialization, plot_load_heatmap

__all__ = [
    "Agreement", "Balance", "Consecutive", "DomainSpecialization", "TokensHTML", "TopTokens", "Trace",
    "VocabSpecialization", "balance", "coactivation", "consecutive_pairs", "consecutive_same_expert",
    "coverage_curve", "cross_layer", "domain_specialization", "expert_colors", "load", "model_fingerprint",
    "plot_coactivation", "plot_coverage", "plot_domain_specialization", "plot_load_heatmap", "record_trace",
    "router_agreement", "tokenizer_sha256", "tokens_html", "top_tokens", "vocab_specialization",
]
