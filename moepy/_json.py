"""The JSON strictness the readers of config.json, safetensors headers and index files share. Imports nothing."""
from __future__ import annotations


def unique_keys(on_duplicate):
    """A json.load object_pairs_hook that builds the dict and raises on_duplicate(key) when a key repeats
    (json's default keeps the last value silently)."""
    def hook(pairs):
        d = {}
        for k, v in pairs:
            if k in d:
                raise on_duplicate(k)
            d[k] = v
        return d
    return hook
