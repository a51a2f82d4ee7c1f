"""The malformed-file corpus: every rule of the reference safetensors reader (and a few more), each violation a
CheckpointError naming the file and the tensor, raised in milliseconds before anything the header implies is
allocated; a hypothesis fuzz of the header parser against the reference (safetensors.deserialize)."""
import json
import struct
import time
import tracemalloc

import numpy as np
import pytest
import safetensors
from hypothesis import HealthCheck, given, settings, strategies as st

from moepy.io import CheckpointError, load_file, open_checkpoint
from moepy.io.safetensors import MAX_HEADER_SIZE, parse_header


def raw_file(header, data: bytes = b"", length=None) -> bytes:
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(h) if length is None else length) + h + data


def f32(shape, begin):
    n = int(np.prod(shape)) * 4
    return {"dtype": "F32", "shape": list(shape), "data_offsets": [begin, begin + n]}


OK = {"a": f32([2], 0), "b": f32([3], 8)}
# (case id, file bytes, tensor the message must name (None: the header), regex of the fault, reference rejects too)
CORPUS = [
    ("short-file", b"\x01\x02\x03", None, "too small", True),
    ("header-too-large", struct.pack("<Q", MAX_HEADER_SIZE + 1) + b"{}", None, "exceeds the limit", True),
    ("header-length-huge", struct.pack("<Q", 2 ** 64 - 1) + b"{}", None, "exceeds the limit", True),
    ("header-past-eof", raw_file(b"{}", length=1000), None, "past the end", True),
    ("not-utf8", raw_file(b'{"a\xff\xfe": 1}'), None, "not UTF-8", True),
    ("not-an-object", raw_file(b"[1, 2]"), None, "does not start with", True),
    ("leading-space", raw_file(b' {"a": 1}'), None, "does not start with", True),
    ("bad-json", raw_file(b'{"a": {"dtype": '), None, "not valid JSON", True),
    ("trailing-garbage", raw_file(b'{}xyz'), None, "not valid JSON", True),
    ("nan-literal", raw_file(b'{"a": {"dtype": "F32", "shape": [NaN], "data_offsets": [0, 0]}}'), None,
     "NaN is not JSON", True),
    ("deep-nesting", raw_file(b"{" + b'"a":' + b"[" * 100000 + b"]" * 100000 + b"}"), None, "not valid JSON", True),
    ("duplicate-name", raw_file(b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
                                b'"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', b"\0" * 4),
     "a", "duplicate", False),
    ("entry-not-object", raw_file({"a": [1, 2]}), "a", "not an object", True),
    ("missing-dtype", raw_file({"a": {"shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4), "a", "no 'dtype'", True),
    ("missing-offsets", raw_file({"a": {"dtype": "F32", "shape": [1]}}, b"\0" * 4), "a", "no 'data_offsets'", True),
    ("unknown-dtype", raw_file({"a": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}}, b"\0" * 16), "a",
     "unknown dtype", True),
    ("dtype-not-string", raw_file({"a": {"dtype": 7, "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4), "a",
     "unknown dtype", True),
    ("negative-dim", raw_file({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4), "a",
     "non-negative integers", True),
    ("float-dim", raw_file({"a": {"dtype": "F32", "shape": [1.0], "data_offsets": [0, 4]}}, b"\0" * 4), "a",
     "non-negative integers", True),
    ("bool-dim", raw_file({"a": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}}, b"\0" * 4), "a",
     "non-negative integers", True),
    ("shape-not-list", raw_file({"a": {"dtype": "F32", "shape": 4, "data_offsets": [0, 16]}}, b"\0" * 16), "a",
     "non-negative integers", True),
    ("dim-beyond-u64", raw_file({"a": {"dtype": "F32", "shape": [2 ** 64], "data_offsets": [0, 4]}}, b"\0" * 4),
     "a", "non-negative integers", True),
    ("count-overflow", raw_file({"a": {"dtype": "F32", "shape": [2 ** 32, 2 ** 32, 2], "data_offsets": [0, 4]}},
                                b"\0" * 4), "a", "overflows", True),
    ("bytes-overflow", raw_file({"a": {"dtype": "F32", "shape": [2 ** 62], "data_offsets": [0, 4]}}, b"\0" * 4),
     "a", "overflows", True),
    ("offsets-one-int", raw_file({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0]}}, b"\0" * 4), "a",
     "two non-negative integers", True),
    ("offsets-float", raw_file({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4.0]}}, b"\0" * 4), "a",
     "two non-negative integers", True),
    ("end-before-begin", raw_file({"a": {"dtype": "F32", "shape": [0], "data_offsets": [4, 0]}}, b"\0" * 4), "a",
     "end 0 < begin 4", True),
    ("byte-count-mismatch", raw_file({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4), "a",
     "needs 8", True),
    ("overlap", raw_file({"a": f32([2], 0), "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}},
                         b"\0" * 12), "b", "overlap tensor 'a'", True),
    ("hole", raw_file({"a": f32([1], 0), "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}},
                      b"\0" * 12), "b", "hole of 4", True),
    ("past-buffer", raw_file(OK, b"\0" * 12), "b", "run past the end", True),
    ("huge-claim", raw_file({"w": {"dtype": "F32", "shape": [2 ** 40], "data_offsets": [0, 2 ** 42]}}), "w",
     "run past the end", True),
    ("trailing-bytes", raw_file(OK, b"\0" * 24), "b", "bytes past the last tensor", True),
    ("metadata-not-str", raw_file({"__metadata__": {"k": 1}, **OK}, b"\0" * 20), "__metadata__",
     "strings to strings", True),
    ("metadata-not-object", raw_file({"__metadata__": [1], **OK}, b"\0" * 20), "__metadata__",
     "strings to strings", True),
    ("subbyte-partial", raw_file({"a": {"dtype": "F4", "shape": [3], "data_offsets": [0, 1]}}, b"\0"), "a",
     "not a whole number of bytes", True),
]


@pytest.mark.parametrize("case,data,tensor,fault,ref_rejects", CORPUS, ids=[c[0] for c in CORPUS])
def test_corpus(tmp_path, case, data, tensor, fault, ref_rejects):
    path = tmp_path / f"{case}.safetensors"
    path.write_bytes(data)
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match=fault) as info:
        load_file(path)
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    err = info.value
    assert isinstance(err, ValueError)
    assert str(path) in str(err) and err.path == str(path)
    assert err.tensor == tensor
    if tensor is not None:
        assert repr(tensor) in str(err)
    assert elapsed < 0.5, f"{case}: {elapsed * 1e3:.1f} ms"
    assert peak < 4 * len(data) + (1 << 20), f"{case}: {peak} bytes allocated for a {len(data)}-byte file"
    with pytest.raises(CheckpointError):
        open_checkpoint(path)
    if ref_rejects:
        with pytest.raises(Exception):
            safetensors.deserialize(data)


def test_corpus_is_large_enough():
    assert len(CORPUS) >= 20


def test_valid_edge_cases(tmp_path):
    """Accepted by both readers: empty header, zero-size tensors, null __metadata__, sub-byte F4 pair."""
    cases = [raw_file({}), raw_file({"__metadata__": None}),
             raw_file({"z": {"dtype": "F32", "shape": [0, 5], "data_offsets": [0, 0]}, "a": f32([1], 0)}, b"\0" * 4),
             raw_file({"q": {"dtype": "F4", "shape": [2], "data_offsets": [0, 1]}}, b"\x21")]
    for i, data in enumerate(cases):
        p = tmp_path / f"ok{i}.safetensors"
        p.write_bytes(data)
        t = load_file(p) if i != 3 else None
        safetensors.deserialize(data)
        if t is not None:
            assert all(isinstance(v, np.ndarray) for v in t.values())
    assert load_file(tmp_path / "ok2.safetensors")["z"].shape == (0, 5)
    with pytest.raises(CheckpointError, match="sub-byte"):
        open_checkpoint(tmp_path / "ok3.safetensors")["q"]


# ------------------------------------------------------------------------------------------------ fuzzing
DTYPES = ["F32", "F16", "BF16", "U8", "I64", "F8_E4M3", "BOOL", "F4", "XX"]
dims = st.lists(st.one_of(st.integers(0, 6), st.integers(-2, 2 ** 65), st.just(1.5), st.booleans()), max_size=3)
entry = st.fixed_dictionaries({"dtype": st.sampled_from(DTYPES), "shape": dims,
                               "data_offsets": st.lists(st.integers(-1, 400), min_size=0, max_size=3)})
headers = st.dictionaries(st.text(max_size=4), st.one_of(entry, st.integers(), st.none(),
                                                         st.dictionaries(st.text(max_size=2), st.text(max_size=2))),
                          max_size=4)


def _check_one(data: bytes):
    try:
        h = parse_header(data, len(data), "fuzz.safetensors")
    except CheckpointError as exc:
        assert exc.path == "fuzz.safetensors"
        return None
    # accepted: the reference must accept it and agree on every tensor
    ref = dict(safetensors.deserialize(data))
    assert set(ref) == set(h.tensors)
    for name, info in h.tensors.items():
        assert ref[name]["dtype"] == info.dtype and tuple(ref[name]["shape"]) == info.shape
        assert bytes(ref[name]["data"]) == data[h.data_start + info.begin:h.data_start + info.end]
    return h


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(headers, st.integers(0, 64), st.one_of(st.none(), st.integers(0, 2 ** 64 - 1)))
def test_fuzz_structured_headers(header, extra, length):
    text = json.dumps(header).encode()
    _check_one(struct.pack("<Q", len(text) if length is None else length) + text + b"\0" * extra)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(data):
    _check_one(data)


VALID = raw_file({"__metadata__": {"format": "pt"}, "a": f32([2], 0), "b": f32([3], 8)}, bytes(range(20)))


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=4),
       st.integers(0, len(VALID)))
def test_fuzz_mutated_valid_file(flips, cut):
    data = bytearray(VALID)
    for pos, val in flips:
        data[pos] = val
    _check_one(bytes(data[:cut]) if cut < len(VALID) // 2 else bytes(data))


def test_fuzz_baseline_valid():
    h = _check_one(VALID)
    assert h is not None and h.metadata == {"format": "pt"}
