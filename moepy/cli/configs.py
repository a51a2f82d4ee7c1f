"""`python -m moepy configs [NAME | config.json ...] [--context N]`: the presets table, or one model in detail."""
from __future__ import annotations

import argparse
import os
import sys

from .. import configs

_NOTE = ("active: parameters one token uses, embedding and head included; memory: weights only, "
         "GB = 1e9 bytes, int4 = 4 bits + one fp16 scale per 32 weights (router and norms bf16); "
         "C(E,k): expert sets per MoE layer")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m moepy configs",
        description="Model presets: parameters, activation ratio, experts, memory (computed from moepy.configs).")
    parser.add_argument("models", nargs="*",
                        help="preset names or paths to a Hugging Face config.json (or its directory): print "
                             "each in detail. Without any, print the table of every preset.")
    parser.add_argument("--context", type=int, default=4096,
                        help="context length for the FLOP and KV-cache figures of the detailed view (default 4096)")
    parser.add_argument("--list", action="store_true", help="print the preset names only")
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))

    if args.list:
        print("\n".join(configs.names()))
        return 0
    if not args.models:
        print(configs.table())
        print(f"\n{_NOTE}")
        return 0
    if args.context < 0:
        print("error: --context must be >= 0", file=sys.stderr)
        return 2
    for i, m in enumerate(args.models):
        looks_like_path = os.sep in m or m.endswith(".json") or m.startswith(".")
        if looks_like_path and not os.path.exists(m):
            print(f"error: no such file or directory: {m!r} (a preset name or a path to a config.json)",
                  file=sys.stderr)
            return 2
        try:
            cfg = configs.ModelConfig.from_hf(m) if os.path.exists(m) else configs.get(m)
        except (KeyError, ValueError, TypeError, OSError) as e:
            msg = e.args[0] if isinstance(e, KeyError) and e.args else e
            print(f"error: {msg}", file=sys.stderr)
            return 2
        if i:
            print()
        print(cfg.summary(context=args.context))
    return 0


if __name__ == "__main__":
    sys.exit(main())
