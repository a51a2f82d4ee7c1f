"""Trace: from_arrays validation, save/load round trip (bit-exact), untrusted files, concat, fingerprints."""
import json
import zipfile

import numpy as np
import pytest

from trace_helpers import random_trace
from moepy.analysis import Trace

FP = {"family": "mixtral", "vocab_size": 11, "tokenizer_sha256": "ab" * 32}


def _arrays(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _write(path, arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_from_arrays_defaults_and_properties():
    tr = Trace.from_arrays(np.array([3, 1, 2]), {5: np.array([[0, 2], [1, 0], [2, 1]])}, num_experts=3)
    assert tr.layers == [5] and tr.num_tokens == 3 and tr.num_experts(5) == 3 and tr.top_k(5) == 2
    np.testing.assert_array_equal(tr.weights[5], np.full((3, 2), 0.5, np.float32))
    assert tr.scores[5] is None and tr.dropped[5] is None
    assert tr.domain_names == ["text"] and tr.chunk_starts.tolist() == [0]
    assert tr.experts[5].dtype == np.int32 and tr.ids.dtype == np.int32
    s = Trace.from_arrays([0], {0: [[1]]}, scores={0: np.array([[0.25, 0.75]])})
    assert s.num_experts(0) == 2 and s.scores[0].dtype == np.float16  # E from the scores, stored float16


@pytest.mark.parametrize("kw, match", [
    (dict(experts={0: [[0, 3]]}), r"experts\[0\]: expert ids out of range"),
    (dict(experts={0: [[1, 1]]}), "selected twice"),
    (dict(experts={0: [[0, 1], [1, 2]]}), "rows"),
    (dict(experts={0: [[0.5, 1]]}), "integers"),
    (dict(weights={0: [[1.0]]}), r"weights\[0\] has shape"),
    (dict(weights={1: [[1.0, 0.0]]}), "weights has layers"),
    (dict(scores={0: [[0.1, 0.2]]}), r"scores\[0\] has shape"),
    (dict(dropped={0: [[0, 1]]}), r"dropped\[0\] must be a bool"),
    (dict(num_experts=None), "num_experts: needed"),
    (dict(domains=[2], domain_names=["a", "b"]), "domains"),
    (dict(chunk_starts=[1]), "chunk_starts"),
    (dict(ids=[-1]), "ids"),
    (dict(ids=[11], meta={"vocab_size": 11}), "ids"),
    (dict(meta={"note": object()}), "JSON-serializable"),
])
def test_from_arrays_refuses_bad_input(kw, match):
    args = dict(ids=[0], experts={0: [[0, 1]]}, num_experts=3)
    args.update(kw)
    ids, experts = args.pop("ids"), args.pop("experts")
    with pytest.raises(ValueError, match=match):
        Trace.from_arrays(ids, experts, **args)


def test_save_load_round_trip_is_bit_exact(tmp_path):
    tr = random_trace(dropped=True, meta=dict(FP, ctx=7))
    p = tmp_path / "t.npz"
    tr.save(p)
    back = Trace.load(p)
    assert back.meta == tr.meta and back.domain_names == tr.domain_names
    for attr in ("ids", "domains", "chunk_starts"):
        a, b = getattr(tr, attr), getattr(back, attr)
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    for l in tr.layers:
        for attr in ("experts", "weights", "scores", "dropped"):
            a, b = getattr(tr, attr)[l], getattr(back, attr)[l]
            assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    bare = Trace.from_arrays([0, 1], {0: [[0], [1]]}, num_experts=2)  # no scores / dropped
    bare.save(tmp_path / "bare.npz")
    back = Trace.load(tmp_path / "bare.npz")
    assert back.scores[0] is None and back.dropped[0] is None


@pytest.fixture
def saved(tmp_path):
    p = tmp_path / "good.npz"
    random_trace(meta=dict(FP)).save(p)
    return p


def _edit(saved, tmp_path, fn):
    a = _arrays(saved)
    fn(a)
    p = tmp_path / "bad.npz"
    _write(p, a)
    return p


def _meta_edit(**kv):
    def fn(a):
        m = json.loads(str(a["meta"]))
        m.update(kv)
        a["meta"] = np.array(json.dumps(m))
    return fn


@pytest.mark.parametrize("fn, match", [
    (lambda a: a.pop("experts_2"), "missing array 'experts_2'"),
    (lambda a: a.pop("meta"), "no 'meta' array"),
    (lambda a: a.update(meta=np.array([1, 2])), "not a JSON string"),
    (lambda a: a.update(meta=np.array("{not json")), "not valid JSON"),
    (_meta_edit(format="numpy"), "meta format"),
    (_meta_edit(version=99), "version 99"),
    (_meta_edit(layers=[0, 2]), "3 entries for 2 layers"),
    (_meta_edit(layers=[0, 2], num_experts=[6, 6], top_k=[2, 2]), "unexpected array 'experts_3'"),
    (_meta_edit(layers=[0, 3, 2]), "ascending"),
    (_meta_edit(num_experts=[6, 6]), "num_experts"),
    (_meta_edit(top_k=[2, 2, 3]), "top_k"),
    (_meta_edit(vocab_size=5), "ids"),
    (lambda a: a.update(experts_0=a["experts_0"] + 3), "out of range"),
    (lambda a: a.update(experts_0=a["experts_0"][:-1]), "rows"),
    (lambda a: a.update(weights_3=a["weights_3"][:, :1]), "shape"),
    (lambda a: a.update(scores_3=a["scores_3"].astype(np.float32)), "float32, expected float16"),
    (lambda a: a.update(ids=a["ids"].astype(np.float64)), "'ids' is float64"),
    (lambda a: a.update(chunk_starts=a["chunk_starts"][::-1].copy()), "chunk_starts"),
    (lambda a: a.update(domains=a["domains"] + 5), "domains"),
    (lambda a: a.update(extra=np.zeros(3)), "unexpected array 'extra'"),
])
def test_load_refuses_inconsistent_files(saved, tmp_path, fn, match):
    p = _edit(saved, tmp_path, fn)
    with pytest.raises(ValueError, match=match) as e:
        Trace.load(p)
    assert str(p) in str(e.value)


def test_load_refuses_corrupt_and_foreign_files(saved, tmp_path):
    data = saved.read_bytes()
    cases = {"truncated.npz": data[: len(data) // 2], "noise.npz": bytes(range(256)) * 4, "empty.npz": b"",
             "flipped.npz": data[: len(data) // 2] + bytes([data[len(data) // 2] ^ 0xFF]) + data[len(data) // 2 + 1:]}
    for name, b in cases.items():
        (tmp_path / name).write_bytes(b)
    np.save(tmp_path / "array.npy", np.zeros(3))
    with open(tmp_path / "pickled.npz", "wb") as f:
        np.savez(f, meta=np.array([{"a": 1}], dtype=object))
    with zipfile.ZipFile(tmp_path / "zip.npz", "w") as z:
        z.writestr("readme.txt", "hello")
    for name in list(cases) + ["array.npy", "pickled.npz", "zip.npz"]:
        p = tmp_path / name
        with pytest.raises(ValueError) as e:
            Trace.load(p)
        assert str(p) in str(e.value), (name, str(e.value))
    with pytest.raises(FileNotFoundError):
        Trace.load(tmp_path / "absent.npz")


def test_concat_joins_domains_and_refuses_other_models():
    a = random_trace(seed=1, T=20, domains=("prose",), meta=dict(FP))
    b = random_trace(seed=2, T=10, domains=("code",), meta=dict(FP))
    c = random_trace(seed=3, T=5, domains=("prose",), meta=dict(FP))
    j = Trace.concat([a, b, c])
    assert j.num_tokens == 35 and j.domain_names == ["prose", "code"]
    assert j.domains.tolist() == [0] * 20 + [1] * 10 + [0] * 5
    assert j.chunk_starts.tolist() == a.chunk_starts.tolist() + [20 + s for s in b.chunk_starts] + [30]
    np.testing.assert_array_equal(j.experts[2], np.concatenate([a.experts[2], b.experts[2], c.experts[2]]))
    assert j.meta == a.meta
    with pytest.raises(ValueError, match=r"traces\[1\]: recorded with a different model"):
        Trace.concat([a, random_trace(E=7, meta=dict(FP))])
    with pytest.raises(ValueError, match=r"traces\[1\]: recorded with a different tokenizer"):
        Trace.concat([a, random_trace(meta=dict(FP, tokenizer_sha256="cd" * 32))])
    with pytest.raises(ValueError, match=r"traces\[1\]: recorded with a different model"):
        Trace.concat([a, random_trace(layers=(0, 2), meta=dict(FP))])
    with pytest.raises(ValueError, match=r"traces\[1\]: its fingerprint"):
        Trace.concat([a, random_trace()])
    with pytest.raises(ValueError, match="traces"):
        Trace.concat([])
