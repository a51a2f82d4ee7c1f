"""The shape of the house: no module-level import cycle in moepy, no source file over ~600 lines, every
family module registered."""
import ast
import os
import pathlib

import moepy
import moepy.families

ROOT = pathlib.Path(__file__).resolve().parents[1]
PKG = ROOT / "moepy"
MAX_LINES = 620  # "no source file over ~600 lines"


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _module_level_imports(path: pathlib.Path) -> set:
    """moepy modules imported by top-level statements of `path` (not inside functions)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("moepy")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("moepy"):
                continue
            out.add(mod)
            for a in node.names:  # `from . import x` may import the submodule x
                if (PKG.parent / (mod + "." + a.name).replace(".", os.sep)).with_suffix(".py").exists() or \
                        (PKG.parent / (mod + "." + a.name).replace(".", os.sep) / "__init__.py").exists():
                    out.add(mod + "." + a.name)
    return out


def _graph():
    graph = {}
    for path in PKG.rglob("*.py"):
        graph[_module_name(path)] = _module_level_imports(path)
    # importing a submodule runs its packages' __init__ first
    for mod in list(graph):
        deps = set(graph[mod])
        for d in list(deps):
            parts = d.split(".")
            deps |= {".".join(parts[:i]) for i in range(1, len(parts))}
        graph[mod] = {d for d in deps if d in graph and d != mod and not mod.startswith(d + ".")}
    return graph


def test_no_module_level_import_cycle():
    graph = _graph()
    state, stack = {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycle = stack[stack.index(d):] + [d]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_no_source_file_over_600_lines():
    long = []
    for pattern in ("moepy/**/*.py", "csrc/**/*.c", "csrc/**/*.h", "csrc/**/*.inc"):
        for path in ROOT.glob(pattern):
            n = len(path.read_text().splitlines())
            if n > MAX_LINES:
                long.append(f"{path.relative_to(ROOT)}: {n}")
    assert not long, long


def test_every_family_module_is_registered():
    import sys
    mods = {p.stem for p in (PKG / "families").glob("*.py") if not p.stem.startswith("_") and p.stem != "registry"}
    families = moepy.families.all_families()  # imports the family modules
    registered = {name.rpartition(".")[2] for name, mod in list(sys.modules.items())
                  if name.startswith("moepy.families.") and getattr(mod, "FAMILY", None) in families}
    assert mods == registered
