"""Every notebook of notebooks/ is re-executed by a real Jupyter kernel (nbclient, the `python3` kernel) from its
sources in scripts/notebooks/, through the same builder as scripts/make_notebooks.py; the test fails when a cell
raises or when the stored notebook is stale (cell ids, sources or text outputs differ; images are compared by
presence only: see make_notebooks.normalise)."""
import importlib.util
import os
import re

import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

_spec = importlib.util.spec_from_file_location("make_notebooks", os.path.join(ROOT, "scripts", "make_notebooks.py"))
make_notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_notebooks)

nbclient = pytest.importorskip("nbclient", reason="the notebook tests run a Jupyter kernel: pip install -e .[test]")
nbformat = pytest.importorskip("nbformat", reason="the notebook tests need nbformat: pip install -e .[test]")
pytest.importorskip("ipykernel", reason="the notebook tests need ipykernel (the python3 kernel): pip install -e .[test]")


@pytest.mark.parametrize("name,module", make_notebooks.NOTEBOOKS, ids=[n for n, _ in make_notebooks.NOTEBOOKS])
def test_notebook_runs_and_is_current(name, module):
    fix = f"run: python scripts/make_notebooks.py {name}"
    path = make_notebooks.path_of(name)
    assert os.path.isfile(path), f"notebooks/{name}.ipynb is missing; {fix}"
    try:
        fresh, _ = make_notebooks.run(name, module)
    except nbclient.exceptions.CellExecutionError as e:
        pytest.fail(f"notebooks/{name}.ipynb: a cell raised (fix scripts/notebooks/{module}.py):\n"
                    + re.sub(r"\x1b\[[0-9;]*m", "", str(e)))
    with open(path, encoding="utf-8") as f:
        stored = nbformat.read(f, as_version=4)
    diff = make_notebooks.stale(stored, fresh)
    assert diff is None, f"notebooks/{name}.ipynb is stale; {fix}\n{diff}"
    assert sum(c.cell_type == "code" for c in fresh.cells) >= 3
