"""Whole decoders: MoEModel (from a checkpoint directory, a GGUF file or a ModelConfig), its KV cache,
generation, tokenizer and router traces; the attention, norms and RoPE around moepy's MoE blocks.

Modules: spec (DecoderSpec: what a family's config.json says about the decoder), rope, layers (Linear, norms,
dense MLP), attention (GQA and MLA over the cache), cache (KVCache), decoder (the layers, one forward step),
model (MoEModel), generate, tokenizer, saving (save_pretrained), random_weights (from_config's weights).
"""
from .cache import KVCache
from .model import MoEModel, decoder_spec
from .spec import AttentionSpec, DecoderSpec, LayerSpec

__all__ = ["AttentionSpec", "DecoderSpec", "KVCache", "LayerSpec", "MoEModel", "decoder_spec"]
