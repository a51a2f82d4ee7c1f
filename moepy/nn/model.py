"""MoEModel: a whole Mixture-of-Experts decoder from a checkpoint, run in NumPy and moepy's C kernels (no torch).

    model = MoEModel.from_pretrained("path/to/checkpoint")       # config.json + safetensors, or a .gguf file
    logits = model(ids)                                           # (T, V) for (T,) ids, (B, T, V) for (B, T)
    out = model.generate(ids, max_new_tokens=32)                  # greedy; the prompt followed by the new ids

Every family transformers implements with an MoE decoder: Mixtral, Qwen1.5/2-MoE, Qwen3-MoE, OLMoE, DBRX,
DeepSeek-V2 / V3 (and Kimi K2), Llama 4 (text), gpt-oss. The attention, norms and RoPE follow transformers 5.23
(moepy/nn/spec.py and ../shared/reference/model_semantics.md); the MoE blocks are moepy's MoELayer.
"""
from __future__ import annotations

import os
from typing import Callable, Dict, Optional, Union

import numpy as np

from .._inputs import as_index
from .._progress import iterate
from ..families import registry
from ..families._config_json import load_hf_config, text_config
from ..moe import quant
from ..moe.layer import MoELayer
from ..routing.config import RouterConfig
from .cache import KVCache
from .decoder import DecoderLayer, Loader, Step
from .layers import DTYPES, Linear, layer_norm, rms_norm
from .spec import DecoderSpec


def decoder_spec(hf_config) -> DecoderSpec:
    """The DecoderSpec of a config.json (dict, path or directory): the family's `decoder` reader. ValueError for
    a family moepy runs no decoder of (Grok-1, Arctic, Switch, GShard, GLaM: presets only; Jamba and Nemotron-H:
    their Mamba layers)."""
    d = load_hf_config(hf_config)
    fam, mt = registry.for_hf_config(d)
    if getattr(fam, "decoder", None) is None:
        have = sorted(t for f in registry.all_families() if getattr(f, "decoder", None) for t in f.model_types)
        raise ValueError(f"model_type {mt!r}: moepy runs no whole decoder of this family (it runs {', '.join(have)})")
    return fam.decoder(text_config(d))


class MoEModel:
    """A decoder: embeddings, DecoderLayers (attention + MoELayer or dense MLP), final norm and head.

    Build with from_pretrained (a checkpoint), from_hf (a config.json and a tensor mapping) or from_config (seeded
    random weights for a ModelConfig). model.config: the ModelConfig; model.spec: the DecoderSpec;
    model.hf_config: the config.json dict; model.layers: the DecoderLayers; model.moe_layers: index -> MoELayer;
    model.tokenizer: a moepy.nn.tokenizer.Tokenizer when the checkpoint has a tokenizer.json (else None)."""

    def __init__(self, spec: DecoderSpec, hf_config: dict, embed: np.ndarray, layers, final_norm: np.ndarray,
                 head: Optional[Linear], *, dtype: str = "float32", quantize: Optional[str] = None,
                 group_size: int = 32, tokenizer=None):
        self.spec, self.hf_config = spec, hf_config
        self.embed, self.layers, self.final_norm, self.head = embed, list(layers), final_norm, head
        self.dtype, self.quantize, self.group_size = dtype, quantize, group_size
        self.tokenizer = tokenizer
        self.expert_parallel = None  # a moepy.parallel.ExpertParallel when the routed experts live across ranks
        self._config = None
        if head is None:  # tied: the embedding matrix is the head
            self.head = Linear(embed)

    def embed_rows(self, ids: np.ndarray) -> np.ndarray:
        """The embeddings of ids (...,) as float32 (..., H): a bf16 model keeps its table in bf16."""
        rows = self.embed[ids]
        if rows.dtype == np.uint16:
            from ..moe.weights import from_bf16_bits
            return from_bf16_bits(rows).reshape(rows.shape)
        return rows

    # ---------------------------------------------------------------- building
    @classmethod
    def from_pretrained(cls, path, dtype: Optional[str] = None, quantize: Optional[str] = None,
                        group_size: int = 32, progress: bool = True, expert_parallel=None) -> "MoEModel":
        """A checkpoint directory (config.json + safetensors, sharded or not) or a llama.cpp .gguf file.

        dtype "float32" or "bfloat16" (weights kept in bf16, activations and accumulation in float32);
        quantize None, "int8", "int4", "int4_asym" or "int4_nl" (the routed experts, in groups of group_size; a GGUF
        file's Q8_0 / Q4_0 / Q4_1 / IQ4_NL experts keep their own blocks); a directory written by save_pretrained loads back
        bit-exact (its dtype and quantization by default). progress: a tqdm bar over the layers (when tqdm is
        installed). expert_parallel: a moepy.parallel.ExpertParallel (or an mpi4py communicator): this rank loads
        only its share of every MoE layer's routed experts (moepy.parallel; run under mpirun)."""
        path = os.fspath(path)
        if os.path.isfile(path) and path.endswith(".gguf"):
            from ..io import open_gguf
            g = open_gguf(path)
            return cls.from_hf(g.config, g, dtype=dtype or "float32", quantize=quantize, group_size=group_size,
                               progress=progress, expert_parallel=expert_parallel)
        from ..io import open_checkpoint
        from .saving import convert_layer, load_saved_layers, saved_settings, tokenizer_for
        if not os.path.isdir(path):
            raise FileNotFoundError(f"path: no checkpoint directory or .gguf file at {path!r}")
        ckpt = open_checkpoint(path)
        d = load_hf_config(os.path.join(path, "config.json"))
        saved = load_saved_layers(path)
        if saved is not None:  # a save_pretrained directory: its MoE layers as they were saved, by default
            settings = saved_settings(d)
            dtype = dtype or settings.get("dtype")
            if settings.get("quantize") and quantize is None:
                quantize, group_size = settings["quantize"], settings.get("group_size", group_size)
            saved = {i: convert_layer(l, dtype or "float32", quantize, group_size) for i, l in saved.items()}
        model = cls.from_hf(d, ckpt, dtype=dtype or "float32", quantize=quantize, group_size=group_size,
                            progress=progress, moe_layers=saved, expert_parallel=expert_parallel)
        model.tokenizer = tokenizer_for(path)
        return model

    @classmethod
    def from_hf(cls, hf_config, tensors, *, dtype: str = "float32", quantize: Optional[str] = None,
                group_size: int = 32, progress: bool = False, moe_layers: Optional[Dict[int, MoELayer]] = None,
                expert_parallel=None) -> "MoEModel":
        """A model from a config.json (dict or path) and a mapping of checkpoint names to arrays (a dict, a
        moepy.io Checkpoint or GGUFCheckpoint). moe_layers: prebuilt MoE layers by index (used as they are).
        expert_parallel: as in from_pretrained."""
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        if quantize is not None:
            quant.check_format(quantize, group_size)
        d = load_hf_config(hf_config)
        spec = decoder_spec(d)
        if tensors is None or not hasattr(tensors, "keys"):
            raise TypeError(f"tensors must be a mapping of checkpoint names to arrays, got {type(tensors).__name__}")
        if "moepy" in d:
            d = {k: v for k, v in d.items() if k != "moepy"}
        ep = None
        if expert_parallel is not None:
            from ..parallel import as_expert_parallel
            ep = as_expert_parallel(expert_parallel)
        L = Loader(spec, tensors, dtype)
        H, V = spec.hidden_size, spec.vocab_size
        embed = L.matrix(spec.names.embed, (V, H))
        layers = []
        for i in iterate(range(spec.num_layers), spec.num_layers, "loading layers", progress):
            ls = spec.layers[i]
            attention = L.attention(i, ls)
            n1, n2 = L.norms(i)
            if ls.ffn == "moe" and ep is not None:
                ffn = _ep_layer(ep, d, tensors, i, dtype, quantize, group_size, (moe_layers or {}).get(i))
            elif ls.ffn == "moe":
                ffn = (moe_layers or {}).get(i) or _moe_layer(d, tensors, i, dtype, quantize, group_size)
            else:
                ffn = L.dense_mlp(i, ls, dtype)
            layers.append(DecoderLayer(i, ls, attention, n1, n2, ffn, spec.norm, spec.norm_eps))
            if hasattr(tensors, "drop_pages"):  # the layer is converted: its file pages leave the RSS
                tensors.drop_pages()
        final = L.vec(spec.names.final_norm, H)
        head = None
        if not spec.tie_embeddings:
            from .decoder import find_root
            try:
                root = find_root(tensors, spec.names.head)
            except KeyError:
                raise KeyError(f"checkpoint tensor {spec.names.head!r} not found (tie_word_embeddings is False)") \
                    from None
            from .layers import weight_array
            head = Linear(weight_array(tensors[root + spec.names.head], dtype, root + spec.names.head, (V, H)))
        model = cls(spec, d, embed, layers, final, head, dtype=dtype, quantize=quantize, group_size=group_size)
        model.expert_parallel = ep
        model.root, model.head_name = L.root, None if head is None else root + spec.names.head
        return model

    @classmethod
    def from_config(cls, config, seed: int = 0, dtype: str = "float32", std: float = 0.02,
                    expert_parallel=None) -> "MoEModel":
        """Seeded random weights (normal, `std`; norms 1) for a ModelConfig of a family with a decoder (any preset
        or cfg.scaled() instance): its to_hf() config.json and moepy.nn.random_weights's tensors
        (expert_parallel: as in from_pretrained)."""
        from .random_weights import random_tensors
        fam = registry.get(config.family) if config.family != "custom" else None
        if fam is None or fam.decoder is None:
            have = ", ".join(f.name for f in registry.all_families() if f.decoder is not None)
            raise ValueError(f"config: moepy runs no whole decoder of family {config.family!r} (a preset-only "
                             f"family); it runs {have}")
        d = config.to_hf()
        model = cls.from_hf(d, random_tensors(d, seed=seed, std=std), dtype=dtype, expert_parallel=expert_parallel)
        model._config = config
        return model

    # ---------------------------------------------------------------- what it is
    @property
    def config(self):
        """The ModelConfig (moepy.configs) of this model."""
        if self._config is None:
            from ..configs.model import ModelConfig
            self._config = ModelConfig.from_hf(self.hf_config)
        return self._config

    @property
    def moe_layers(self) -> Dict[int, MoELayer]:
        """Layer index -> its MoELayer."""
        return {l.index: l.ffn for l in self.layers if l.is_moe}

    @property
    def vocab_size(self) -> int:
        """V."""
        return self.spec.vocab_size

    def __repr__(self):
        q = f", experts {self.quantize}" if self.quantize else ""
        return (f"MoEModel({self.spec.family}: {self.spec.num_layers} layers, {len(self.moe_layers)} MoE, "
                f"H={self.spec.hidden_size}, V={self.spec.vocab_size}, {self.dtype}{q})")

    def set_router(self, router: Union[RouterConfig, Callable[[int, RouterConfig], RouterConfig]],
                   layers=None) -> Dict[int, RouterConfig]:
        """Replace the RouterConfig of the MoE layers `layers` (default: all): `router` a RouterConfig, or
        f(layer_index, current) -> RouterConfig. Returns the previous routers by layer (pass it back to restore:
        set_router(lambda i, r: old[i]))."""
        moe = self.moe_layers
        idx = list(moe) if layers is None else [int(i) for i in layers]
        bad = [i for i in idx if i not in moe]
        if bad:
            raise ValueError(f"layers {bad} are not MoE layers; the MoE layers are {list(moe)}")
        old = {i: moe[i].router for i in idx}
        new = {i: (router(i, old[i]) if callable(router) and not isinstance(router, RouterConfig) else router)
               for i in idx}
        for i, r in new.items():
            if not isinstance(r, RouterConfig):
                raise TypeError(f"router for layer {i} must be a RouterConfig, got {type(r).__name__}")
            if r.num_experts not in (None, moe[i].num_experts):
                raise ValueError(f"router for layer {i} has num_experts={r.num_experts}; the layer has "
                                 f"{moe[i].num_experts}")
        for i, r in new.items():
            moe[i].router = r
        return old

    def quantize_projections(self, format: str = "int8", group_size: int = 32) -> int:
        """Quantize the dense projections in place (every attention Linear and the output head; the dense MLPs
        follow `quantize` at load, the routed experts theirs): INT blocks of moepy.moe.quant, activations
        quantised to INT8 per group in the kernel. What a GGUF Q8_0 / Q4_0 file's llama.cpp run reads. A
        projection whose sizes group_size does not divide stays as it is. Returns how many Linears were quantized
        (q, k and v held fused count once).
        save_pretrained writes them dequantized (float)."""
        n = 0
        for layer in self.layers:
            att = layer.attention
            for name, v in att.projections().items():
                q = v.quantized(format, group_size)
                n += q is not v
                att.set_projection(name, q)
        q = self.head.quantized(format, group_size)
        n += q is not self.head
        self.head = q
        return n

    # ---------------------------------------------------------------- running
    def new_cache(self, batch_size: int = 1, capacity: Optional[int] = None) -> KVCache:
        """An empty KVCache for `batch_size` sequences of up to `capacity` tokens (default
        max_position_embeddings)."""
        cap = self.spec.max_position_embeddings if capacity is None else capacity
        return KVCache({l.index: l.attention.cache_shapes() for l in self.layers}, batch_size, cap)

    def _ids(self, input_ids) -> np.ndarray:
        ids = as_index(input_ids, "input_ids", np.int64, (1, 2))
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            bad = ids[(ids < 0) | (ids >= self.vocab_size)][0]
            raise ValueError(f"input_ids: id {int(bad)} is outside the vocabulary [0, {self.vocab_size})")
        if ids.shape[-1] == 0:
            raise ValueError("input_ids: no tokens")
        return ids

    def __call__(self, input_ids, attention_mask=None, *, cache: Optional[KVCache] = None, logits_to_keep: int = 0,
                 return_routing: bool = False):
        """Logits (float32) of input_ids: (T, V) for (T,) ids, (B, T, V) for (B, T).

        attention_mask (B, T) (or (T,)): 1 for real tokens, 0 for (left) padding, as transformers takes it;
        positions count real tokens only, so a padded row gives what the row alone gives. cache: a KVCache to
        read and append to (None: a fresh one for this call). logits_to_keep N > 0: the last N positions only.
        return_routing: also return {layer_index: Routing} of every MoE layer (these tokens)."""
        ids = self._ids(input_ids)
        squeeze = ids.ndim == 1
        ids2 = ids[None] if squeeze else ids
        B, T = ids2.shape
        if attention_mask is None:
            valid = np.ones((B, T), bool)
        else:
            m = as_index(attention_mask, "attention_mask", np.int64, (1, 2))
            m = m[None] if m.ndim == 1 else m
            if m.shape != (B, T):
                raise ValueError(f"attention_mask has shape {m.shape}, input_ids {ids2.shape}")
            if ((m != 0) & (m != 1)).any():
                raise ValueError("attention_mask must hold only 0 and 1")
            valid = m.astype(bool)
        if isinstance(logits_to_keep, bool) or not isinstance(logits_to_keep, (int, np.integer)) or logits_to_keep < 0:
            raise ValueError(f"logits_to_keep must be an int >= 0, got {logits_to_keep!r}")
        if cache is None:
            cache = self.new_cache(B, capacity=T)
        elif not isinstance(cache, KVCache):
            raise TypeError(f"cache must be a KVCache (model.new_cache()), got {type(cache).__name__}")
        cache.check_step(B, T)
        step = Step(cache, valid)
        routing = {} if return_routing else None
        x = self.embed_rows(ids2)
        for layer in self.layers:
            x = layer(x, step, routing)
        cache.end_step(valid)
        if logits_to_keep:
            x = x[:, -logits_to_keep:]
        x = layer_norm(x, self.final_norm) if self.spec.norm == "layer" else \
            rms_norm(x, self.final_norm, self.spec.norm_eps)
        logits = self.head(x)
        if squeeze:
            logits = logits[0]
        return (logits, routing) if return_routing else logits

    def idle_forward(self) -> None:
        """Expert parallelism: take part in one forward's expert exchanges without tokens of this rank's own (a
        rank that has no chunk this round); every rank calls its MoE layers in the same order."""
        if self.expert_parallel is None:
            raise RuntimeError("idle_forward is for expert-parallel models (from_pretrained(expert_parallel=...))")
        for layer in self.layers:
            if layer.is_moe:
                layer.ffn.idle()

    def generate(self, input_ids=None, max_new_tokens: int = 32, temperature: float = 0.0, top_k: Optional[int] = None,
                 top_p: Optional[float] = None, seed: Optional[int] = None, stop=None, stream=None, *, prompt=None,
                 attention_mask=None):
        """The prompt followed by up to max_new_tokens new ids (moepy.nn.generate.generate; text in and out with
        prompt= when the model has a tokenizer)."""
        from .generate import generate
        return generate(self, input_ids, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                        seed=seed, stop=stop, stream=stream, prompt=prompt, attention_mask=attention_mask)

    def save_pretrained(self, path) -> None:
        """Write config.json + model.safetensors (+ the tokenizer files): non-expert tensors under their checkpoint
        names, MoE layers' experts in moepy's layer format (INT blocks with their metadata), so from_pretrained
        loads it back bit-exact without re-quantizing."""
        from .saving import save_pretrained
        save_pretrained(self, path)


def _moe_layer(d: dict, tensors, i: int, dtype: str, quantize: Optional[str], group_size: int) -> MoELayer:
    if hasattr(tensors, "moe_layer") and quantize is None:  # a GGUF file: its INT experts keep their blocks
        return tensors.moe_layer(i, dtype)
    return MoELayer.from_hf(d, tensors, i, dtype=dtype, quantize=quantize, group_size=group_size)


def _ep_layer(ep, d: dict, tensors, i: int, dtype: str, quantize: Optional[str], group_size: int,
              prebuilt: Optional[MoELayer]) -> MoELayer:
    """MoE layer i with only this rank's routed experts: read from the checkpoint source alone when the family
    reads experts one at a time, else sliced from the packed layer."""
    if prebuilt is not None:
        return ep.wrap(prebuilt, i, prebuilt.dtype, prebuilt.group_size)
    if hasattr(tensors, "moe_layer") and quantize is None:  # GGUF: the file's blocks
        layer = tensors.moe_layer(i, dtype)
        return ep.wrap(layer, i, layer.dtype, layer.group_size)
    layer = MoELayer._from_hf_unpacked(d, tensors, i, dtype)
    fmt = quantize or dtype
    if layer._routed is not None and fmt != layer.dtype:  # packed already: quantize it whole, then slice
        layer = layer.quantize(fmt, group_size)
    return ep.wrap(layer, i, fmt, group_size)
