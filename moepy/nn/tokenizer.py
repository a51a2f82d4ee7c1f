"""Tokenizer: a checkpoint's tokenizer.json, read by the `tokenizers` package (an optional dependency:
pip install "moepy[tokenizers]"), with the special tokens of its tokenizer_config.json / config.json."""
from __future__ import annotations

import json
import os
from typing import List, Optional, Sequence


def _json(path: str) -> dict:
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        d = json.load(f)
    return d if isinstance(d, dict) else {}


def _token(v) -> Optional[str]:
    if isinstance(v, dict):
        v = v.get("content")
    return v if isinstance(v, str) else None


class Tokenizer:
    """encode(text) -> ids and decode(ids) -> text. bos_token_id / eos_token_id from tokenizer_config.json (or
    the tokenizer's own special tokens); add_bos: whether encode puts BOS first (add_bos_token, or what the
    tokenizer.json's post-processor does)."""

    def __init__(self, tokenizer, *, bos_token: Optional[str] = None, eos_token: Optional[str] = None,
                 add_bos: Optional[bool] = None, source_dir: Optional[str] = None):
        self._tok = tokenizer
        self.source_dir = source_dir
        self.bos_token_id = tokenizer.token_to_id(bos_token) if bos_token else None
        self.eos_token_id = tokenizer.token_to_id(eos_token) if eos_token else None
        self._add_bos = bool(add_bos) and self.bos_token_id is not None

    @classmethod
    def from_dir(cls, path: str) -> "Tokenizer":
        """The tokenizer of a checkpoint directory (tokenizer.json required)."""
        try:
            from tokenizers import Tokenizer as HFTokenizer
        except ImportError:
            raise ImportError("reading tokenizer.json needs the tokenizers package: pip install "
                              "\"moepy[tokenizers]\"") from None
        tok = HFTokenizer.from_file(os.path.join(path, "tokenizer.json"))
        cfg = _json(os.path.join(path, "tokenizer_config.json"))
        bos, eos = _token(cfg.get("bos_token")), _token(cfg.get("eos_token"))
        return cls(tok, bos_token=bos, eos_token=eos, add_bos=cfg.get("add_bos_token"), source_dir=path)

    @property
    def vocab_size(self) -> int:
        """Tokens in the vocabulary (added tokens included)."""
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def adds_bos(self) -> bool:
        """True if encode(text) starts with the BOS token (by add_bos_token or by the tokenizer's post-processor)."""
        if self._add_bos:
            return True
        if self.bos_token_id is None:
            return False
        ids = self._tok.encode("a", add_special_tokens=True).ids
        return bool(ids) and ids[0] == self.bos_token_id

    def encode(self, text: str, add_special_tokens: bool = True) -> List[int]:
        """text -> ids (with BOS first when the tokenizer adds it and add_special_tokens)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        ids = self._tok.encode(text, add_special_tokens=add_special_tokens).ids
        if add_special_tokens and self._add_bos and (not ids or ids[0] != self.bos_token_id):
            ids = [self.bos_token_id] + ids
        return ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """ids -> text."""
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)
