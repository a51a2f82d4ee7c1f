"""Build the notebooks of notebooks/ from their sources and execute them with a real Jupyter kernel.

    python scripts/make_notebooks.py              # rebuild every notebook
    python scripts/make_notebooks.py 01_tour      # rebuild the named ones (name, its number "01", or NN_name.ipynb)

Each notebook's cells are Python data in one module of scripts/notebooks/ (nbNN_<name>.py) exposing
    CELLS = [("md", "# Title ..."), ("code", "import moepy ..."), ...]
The builder makes an nbformat v4 notebook of them (cell ids derived from the notebook name and the cell's
index, so a rebuild gives the same ids), runs it with nbclient in the `python3` kernel (this interpreter:
sys.executable, cwd = the repository root, PYTHONPATH = the repository root first, so the kernel imports the
checkout's moepy), and writes notebooks/NN_name.ipynb with its outputs: text, and image/png for matplotlib
figures (the inline backend). Execution timing metadata is stripped, execution counts are sequential and a
cell's printed text is one stream output, so a rebuild of unchanged sources gives the same file (byte for byte
on one machine; the PNG bytes may differ across matplotlib builds, which the staleness test allows).

Adding a notebook:
  1. write scripts/notebooks/nbNN_name.py with CELLS (cells must print nothing that varies run to run:
     no timings, memory addresses, paths or dates; moepy's numbers are bitwise deterministic);
  2. add ("NN_name", "nbNN_name") to NOTEBOOKS below;
  3. run python scripts/make_notebooks.py NN_name and commit the .ipynb with the source module.
tests/test_notebooks.py re-executes each registered notebook and fails when it raises or when the stored
outputs are stale (see normalise()). Each notebook should run in well under a minute on 2 cores.
"""
from __future__ import annotations

import copy
import importlib
import os
import re
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(ROOT, "notebooks")

# (notebook name: notebooks/<name>.ipynb, source module in scripts/notebooks/), in reading order
NOTEBOOKS: List[Tuple[str, str]] = [
    ("01_tour", "nb01_tour"),
    ("02_configs", "nb02_configs"),
    ("03_routing_schemes", "nb03_routing_schemes"),
    ("04_load_balancing", "nb04_load_balancing"),
    ("05_expert_placement", "nb05_expert_placement"),
    ("06_quantization", "nb06_quantization"),
]

KERNEL = "python3"
TIMEOUT = 120  # seconds per cell


def cells_of(module: str) -> List[Tuple[str, str]]:
    """The CELLS of scripts/notebooks/<module>.py (imported fresh)."""
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    mod = importlib.import_module(f"notebooks.{module}")
    mod = importlib.reload(mod)
    cells = mod.CELLS
    for kind, src in cells:
        if kind not in ("md", "code") or not isinstance(src, str):
            raise ValueError(f"{module}.CELLS: each cell is ('md' or 'code', str), got {kind!r}")
    return cells


def build(name: str, cells: Sequence[Tuple[str, str]]):
    """The unexecuted nbformat notebook of `cells`, with stable cell ids `<name>-<index>`."""
    import nbformat
    from nbformat import v4
    nb = v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": KERNEL, "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}}
    for i, (kind, src) in enumerate(cells):
        make = v4.new_markdown_cell if kind == "md" else v4.new_code_cell
        nb.cells.append(make(src.strip("\n"), id=f"{name.replace('_', '-')}-{i:02d}"))
    nbformat.validate(nb)
    return nb


def _kernel_env() -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    env["PYTHONHASHSEED"] = "0"
    return env


def execute(nb):
    """Run `nb` in a fresh python3 kernel in the repository root; returns it with outputs. jupyter_client
    launches a kernelspec whose argv[0] is "python" with sys.executable, so the kernel is this interpreter
    (and ipykernel's own spec names "python"). Raises nbclient.exceptions.CellExecutionError when a cell raises."""
    from nbclient import NotebookClient

    client = NotebookClient(nb, kernel_name=KERNEL, timeout=TIMEOUT, resources={"metadata": {"path": ROOT}},
                            record_timing=False, allow_errors=False)
    client.execute(env=_kernel_env())
    return nb


def _merge_streams(outputs):
    """Consecutive stream outputs of one name joined into one (how the kernel splits a cell's printing into
    messages depends on flush timing)."""
    merged = []
    for o in outputs:
        if o["output_type"] == "stream" and merged and merged[-1]["output_type"] == "stream" \
                and merged[-1]["name"] == o["name"]:
            merged[-1]["text"] += o["text"]
        else:
            merged.append(copy.deepcopy(o))
    return merged


def clean(nb):
    """Strip what varies run to run from an executed notebook: execution timing metadata, widget state, the
    split of printed text into stream messages; execution counts become 1, 2, ... over the code cells."""
    n = 0
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type != "code":
            continue
        n += 1
        cell.execution_count = n
        cell.outputs = _merge_streams(cell.outputs)
        for out in cell.outputs:
            if "execution_count" in out:
                out["execution_count"] = n
            out.get("metadata", {}).pop("execution", None)
    nb.metadata.pop("widgets", None)
    return nb


def run(name: str, module: str):
    """Build, execute and clean one notebook; returns (notebook, seconds)."""
    t0 = time.perf_counter()
    nb = clean(execute(build(name, cells_of(module))))
    return nb, time.perf_counter() - t0


# ------------------------------------------------------------------ staleness
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def normalise(nb) -> List[dict]:
    """What the staleness check compares, cell by cell: id, type, source, and each output reduced to
    (type, stream name or "image/png", text); consecutive streams of one name are joined first; text outputs
    are compared exactly as stored (moepy is bitwise deterministic, so numbers
    printed are identical run to run), except that memory addresses (" at 0x...") become " at 0x?";
    image/png outputs count as present, their bytes are not compared (PNG encoders embed versions and may
    differ across matplotlib/libpng builds)."""
    out = []
    for cell in nb.cells:
        item = {"id": cell.get("id"), "type": cell.cell_type, "source": cell.source}
        if cell.cell_type == "code":
            outs = []
            for o in _merge_streams(cell.outputs):
                kind = o["output_type"]
                if kind == "stream":
                    outs.append((kind, o["name"], _ADDRESS.sub(" at 0x?", o["text"])))
                elif kind in ("execute_result", "display_data"):
                    data = o.get("data", {})
                    text = _ADDRESS.sub(" at 0x?", data.get("text/plain", ""))
                    outs.append((kind, "image/png" if "image/png" in data else "", text))
                else:  # error
                    outs.append((kind, o.get("ename", ""), o.get("evalue", "")))
            item["outputs"] = outs
        out.append(item)
    return out


def stale(stored, fresh) -> Optional[str]:
    """None when `stored` matches `fresh` under normalise(); else a description of the first difference."""
    a, b = normalise(stored), normalise(fresh)
    if len(a) != len(b):
        return f"{len(a)} cells stored, {len(b)} built"
    for i, (x, y) in enumerate(zip(a, b)):
        for key in ("id", "type", "source", "outputs"):
            if x.get(key) != y.get(key):
                return f"cell {i} ({y.get('id')}): its {key} differs\n" + _first_difference(x.get(key), y.get(key))
    return None


def _first_difference(a, b) -> str:
    """The first differing line of two sources or output lists, stored (-) against built (+)."""
    import difflib
    flat = lambda v: v.splitlines() if isinstance(v, str) else \
        [f"[{o[0]} {o[1]}] {line}" for o in (v or []) for line in (o[2].splitlines() or [""])]
    diff = [d for d in difflib.unified_diff(flat(a), flat(b), "stored", "built", n=0, lineterm="")]
    return "\n".join(diff[:8]) or f"stored {len(a or [])} outputs, built {len(b or [])}"


def path_of(name: str) -> str:
    return os.path.join(OUT, f"{name}.ipynb")


def write(name: str, nb) -> str:
    import nbformat
    os.makedirs(OUT, exist_ok=True)
    p = path_of(name)
    with open(p, "w", encoding="utf-8") as f:
        nbformat.write(nb, f)
    return p


def select(args: Sequence[str]) -> List[Tuple[str, str]]:
    if not args:
        return list(NOTEBOOKS)
    chosen = []
    for a in args:
        a = os.path.basename(a).removesuffix(".ipynb")
        hit = [nbk for nbk in NOTEBOOKS if nbk[0] == a or nbk[0].split("_", 1)[0] == a or nbk[1] == a]
        if not hit:
            raise SystemExit(f"no notebook {a!r}; the notebooks are {[n for n, _ in NOTEBOOKS]}")
        chosen += [h for h in hit if h not in chosen]
    return chosen


def main(argv: Sequence[str]) -> int:
    for name, module in select(argv):
        nb, seconds = run(name, module)
        p = write(name, nb)
        print(f"wrote {os.path.relpath(p, ROOT)}  ({seconds:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
