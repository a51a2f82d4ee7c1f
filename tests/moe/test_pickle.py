"""Layers pickle and unpickle to identical outputs (float, bf16 and INT), so multiprocessing and joblib can
ship them to workers."""
import concurrent.futures
import multiprocessing
import pickle

import numpy as np
import pytest

import moepy
from moepy import RouterConfig


def _layers():
    base = moepy.MoELayer.random(RouterConfig.deepseek_v3(16, 4, n_group=4, topk_group=2), 64, 32,
                                 shared_intermediate_size=32, selection_bias=True)
    qwen = moepy.MoELayer.random(RouterConfig.qwen2_moe(8, 2), 64, 32, shared_intermediate_size=32, shared_gate=True,
                                 dtype="bfloat16")
    llama = moepy.MoELayer.random(RouterConfig.llama4(8, 1), 64, 32, shared_intermediate_size=32, scale_input=True)
    switch = moepy.MoELayer.random(RouterConfig.switch(8, expert_capacity=2), 64, 32, activation="relu")
    return {"float32": base, "bfloat16 + gate": qwen, "llama4": llama, "switch": switch,
            "int8": base.quantize("int8"), "int4": base.quantize("int4", group_size=32),
            "int4_asym": qwen.quantize("int4_asym", shared=True),
            "int4_nl": switch.quantize("int4_nl")}


X = np.random.default_rng(3).standard_normal((2, 9, 64)).astype(np.float32)


@pytest.mark.parametrize("name", list(_layers()))
def test_pickle_round_trip_is_bitwise(name):
    layer = _layers()[name]
    back = pickle.loads(pickle.dumps(layer))
    assert repr(back) == repr(layer)
    assert np.array_equal(back(X), layer(X))
    assert back.nbytes() == layer.nbytes()


def _run(layer):
    return layer(X)


def test_layers_go_to_worker_processes():
    layers = _layers()
    ctx = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as pool:
        outs = list(pool.map(_run, layers.values()))
    for layer, y in zip(layers.values(), outs):
        assert np.array_equal(y, layer(X))


def test_forked_child_runs_serially_instead_of_hanging():
    """GNU OpenMP's pool does not survive fork(): moepy's kernels run on one thread in a forked child."""
    import os
    layer = _layers()["float32"]
    want = layer(X)  # the parent has run OpenMP regions
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            ok = np.array_equal(layer(X), want) and moepy.get_num_threads() == 1
            os.write(w, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(w)
    got = os.read(r, 1)
    os.waitpid(pid, 0)
    assert got == b"1"
    assert moepy.get_num_threads() >= 1
