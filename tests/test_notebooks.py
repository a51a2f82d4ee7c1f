"""The notebooks' cells run against the current code (scripts/make_notebooks.py rebuilds them)."""
import importlib.util
import json
import os

ROOT = os.path.join(os.path.dirname(__file__), "..")


def test_tour_notebook_runs_and_is_current():
    spec = importlib.util.spec_from_file_location("make_notebooks", os.path.join(ROOT, "scripts", "make_notebooks.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cells = mod.run_cells(mod.TOUR)
    assert sum(c["cell_type"] == "code" for c in cells) >= 6
    stored = json.load(open(os.path.join(ROOT, "notebooks", "01_tour.ipynb")))
    assert [c["source"] for c in stored["cells"]] == [c["source"] for c in cells], \
        "notebooks/01_tour.ipynb is stale: run python scripts/make_notebooks.py"
