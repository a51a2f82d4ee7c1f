"""`python -m moepy simulate` and the docstrings of moepy.sim's public API."""
import inspect
import json
import os
import subprocess
import sys

import pytest

import moepy.sim
from moepy.__main__ import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL = ["simulate", "--model", "deepseek-v3", "--devices", "16", "--nodes", "4", "--replicas", "16",
         "--tokens", "2048", "--node-limit", "2"]


def test_simulate_prints_the_policy_against_round_robin(capsys):
    assert main(SMALL) == 0
    out = capsys.readouterr().out
    assert "eplb" in out and "round_robin" in out and "tokens over 2 nodes" in out and "Jain" in out


def test_simulate_json_and_list_policies(capsys):
    assert main(SMALL + ["--json", "--policy", "coactivation", "--capacity-factor", "1.0"]) == 0
    rep = json.loads(capsys.readouterr().out)["reports"]
    assert set(rep) == {"coactivation", "round_robin"} and rep["coactivation"]["num_devices"] == 16
    assert rep["round_robin"]["dropped"] >= 0 and rep["coactivation"]["token_bytes"] == 7168 * 2
    assert main(["simulate", "--list-policies"]) == 0
    assert set(moepy.sim.POLICIES) <= set(capsys.readouterr().out.split())


@pytest.mark.parametrize("bad,message", [(["--node-limit", "5"], "larger than the node count"),
                                         (["--policy", "fastest"], "--policy must be one of"),
                                         (["--model", "nope"], "no preset"),
                                         (["--replicas", "3"], "num_replicas=3"),
                                         (["--tokens", "0"], "--tokens must be >= 1")])
def test_simulate_bad_input_exits_2(capsys, bad, message):
    assert main(SMALL + bad) == 2
    err = capsys.readouterr().err
    assert err.startswith("moepy simulate:") and message in err


def test_simulate_subprocess_exit_code():
    env = dict(os.environ, PYTHONPATH=ROOT)
    p = subprocess.run([sys.executable, "-m", "moepy", "simulate", "--devices", "6"], capture_output=True,
                       text=True, env=env, cwd=ROOT)
    assert p.returncode == 2 and "not divisible by num_devices=6" in p.stderr


def test_public_api_has_docstrings():
    missing = []
    for name in moepy.sim.__all__:
        obj = getattr(moepy.sim, name)
        if not (inspect.isclass(obj) or callable(obj)):
            continue
        if not (obj.__doc__ or "").strip():
            missing.append(name)
        if inspect.isclass(obj):
            for m, v in vars(obj).items():
                f = v.fget if isinstance(v, property) else getattr(v, "__func__", v)
                if not m.startswith("_") and (isinstance(v, property) or inspect.isfunction(f)) \
                        and not (f.__doc__ or "").strip():
                    missing.append(f"{name}.{m}")
    assert not missing, missing
