"""Scripted evaluation of checkpoints: perplexity in llama-perplexity's convention, KL divergence against a saved
run (and how much of it the routers' changed choices cause: routing_drift), the routing report, speed and memory (`python -m moepy eval`); the built-in checkpoints and held-out text."""
from .drift import routing_drift
from .perplexity import kld_stats, log_softmax, perplexity_stats, unigram_baseline
from .routing_report import layer_report, routing_report
from .run import EvalError, evaluate
from . import builtin

__all__ = ["EvalError", "builtin", "evaluate", "kld_stats", "layer_report", "log_softmax", "perplexity_stats",
           "routing_drift", "routing_report", "unigram_baseline"]
