"""Progress bars on long work (tqdm, an optional extra): one place for how moepy shows them."""
from __future__ import annotations

import sys


def bar(total: int, desc: str, show: bool, *, unit: str = "it", tty_only: bool = False):
    """A tqdm bar of `total` steps on stderr (call .update() and .close()), or None when not shown: show False,
    tqdm not installed, or tty_only and stderr is not a terminal (a command's bar stays out of logs)."""
    if not show or (tty_only and not sys.stderr.isatty()):
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False)


def iterate(it, total: int, desc: str, show: bool):
    """`it`, counted by a bar of `total` steps while it is iterated when shown (as bar())."""
    b = bar(total, desc, show)
    if b is None:
        yield from it
        return
    try:
        for item in it:
            yield item
            b.update()
    finally:
        b.close()
