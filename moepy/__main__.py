"""Command line: `python -m moepy demo | eval | generate | configs | simulate | info`."""
from __future__ import annotations

import os
import sys


USAGE = """usage: python -m moepy <command>

commands:
  demo      route random tokens through DeepSeek-V3- and Mixtral-style routers (and layers) and compare
  eval      perplexity, KL divergence and the routing report of a checkpoint on a text (eval --help)
  generate  generate text from a prompt with a checkpoint (generate --help)
  configs   print the table of model presets (parameters, activation ratio, memory)
  simulate  expert placement on a simulated cluster: all-to-all bytes, device load, step time (simulate --help)
  info      print build information (OpenMP, threads, ISA)
"""


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "demo":
        from .cli.demo import main as demo_main
        return demo_main(rest)
    if cmd in ("eval", "generate"):
        from .cli import eval as cli_eval
        return (cli_eval.eval_main if cmd == "eval" else cli_eval.generate_main)(rest)
    if cmd == "configs":
        from .cli.configs import main as configs_main
        return configs_main(rest)
    if cmd == "simulate":
        from .cli.simulate import main as simulate_main
        return simulate_main(rest)
    if cmd == "info":
        import moepy
        for k, v in moepy.build_info().items():
            print(f"{k:>14}: {v}")
        return 0
    print(f"unknown command {cmd!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. `python -m moepy configs | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)
