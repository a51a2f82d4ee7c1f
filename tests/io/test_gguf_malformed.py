"""Malformed GGUF files (the llama.cpp CVEs are sizes, offsets and counts taken on trust): each a CheckpointError
naming the file and the tensor or key, quickly, before anything the header implies is allocated; a fuzz of the
validating pass on mutated files."""
import struct
import time
import tracemalloc

import gguf
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from moepy.io import CheckpointError
from moepy.io.gguf import scan


def s(text) -> bytes:
    b = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(b)) + b


def kv_u32(key, v):
    return s(key) + struct.pack("<II", 4, v)


def kv_str(key, v):
    return s(key) + struct.pack("<I", 8) + s(v)


def tinfo(name, dims, ttype=0, offset=0):
    return s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims) + \
        struct.pack("<IQ", ttype, offset)


def gguf_file(kvs=(), tensors=(), data=b"", version=3, n_kv=None, n_t=None, align=32, magic=b"GGUF"):
    head = magic + struct.pack("<I", version) + struct.pack("<QQ", len(tensors) if n_t is None else n_t,
                                                           len(kvs) if n_kv is None else n_kv)
    body = head + b"".join(kvs) + b"".join(tensors)
    pad = -len(body) % align
    return body + b"\0" * pad + data


ARCH = kv_str("general.architecture", "olmoe")
ONE = [tinfo("a", [8])]
DATA = b"\0" * 32
CASES = [
    ("tiny", b"GGUF\3\0\0\0", None, "too small"),
    ("magic", gguf_file([ARCH], ONE, DATA, magic=b"GGML"), None, "magic"),
    ("version-1", gguf_file([ARCH], ONE, DATA, version=1), None, "version 1"),
    ("big-endian", gguf_file([ARCH], ONE, DATA, version=3 << 24), None, "big-endian"),
    ("kv-count", gguf_file([ARCH], ONE, DATA, n_kv=2 ** 63), None, "key/value pairs cannot fit"),
    ("tensor-count", gguf_file([ARCH], ONE, DATA, n_t=2 ** 62), None, "tensors cannot fit"),
    ("key-length", gguf_file([struct.pack("<Q", 2 ** 40) + b"x"], ONE, DATA), None, "key of"),
    ("string-past-eof", gguf_file([s("k") + struct.pack("<I", 8) + struct.pack("<Q", 10 ** 6)], ONE, DATA), "k",
     "past the end"),
    ("array-count", gguf_file([s("k") + struct.pack("<IIQ", 9, 4, 2 ** 60)], ONE, DATA), "k",
     "array of 1,152,921,504,606,846,976 items"),
    ("string-array-count", gguf_file([s("k") + struct.pack("<IIQ", 9, 8, 2 ** 50)], ONE, DATA), "k", "array of"),
    ("nested-array", gguf_file([s("k") + struct.pack("<IIQ", 9, 9, 1)], ONE, DATA), "k", "nested arrays"),
    ("value-type", gguf_file([s("k") + struct.pack("<I", 99)], ONE, DATA), "k", "unknown value type 99"),
    ("array-item-type", gguf_file([s("k") + struct.pack("<IIQ", 9, 77, 1)], ONE, DATA), "k",
     "unknown array item type"),
    ("duplicate-key", gguf_file([ARCH, ARCH], ONE, DATA), "general.architecture", "duplicate key"),
    ("key-not-utf8", gguf_file([s(b"\xff\xfe") + struct.pack("<II", 4, 1)], ONE, DATA), None, "not UTF-8"),
    ("alignment", gguf_file([ARCH, kv_u32("general.alignment", 3)], ONE, DATA), "general.alignment",
     "power of two"),
    ("alignment-type", gguf_file([ARCH, kv_str("general.alignment", "32")], ONE, DATA), "general.alignment",
     "power of two"),
    ("dims-5", gguf_file([ARCH], [tinfo("a", [1, 1, 1, 1, 1])], DATA), "a", "5 dimensions"),
    ("dims-count-huge", gguf_file([ARCH], [s("a") + struct.pack("<I", 2 ** 31)], DATA), "a", "dimensions"),
    ("dim-zero", gguf_file([ARCH], [tinfo("a", [8, 0])], DATA), "a", "each must be >= 1"),
    ("dim-overflow", gguf_file([ARCH], [tinfo("a", [2 ** 32, 2 ** 32])], DATA), "a", "overflows"),
    ("tensor-type", gguf_file([ARCH], [tinfo("a", [8], 99)], DATA), "a", "unknown tensor type 99"),
    ("partial-block", gguf_file([ARCH], [tinfo("a", [20], 8)], DATA), "a", "not whole Q8_0 blocks"),
    ("misaligned", gguf_file([ARCH], [tinfo("a", [2], 0, 4)], DATA), "a", "not a multiple of the alignment"),
    ("past-eof", gguf_file([ARCH], [tinfo("a", [2 ** 30])], DATA), "a", "run past the end"),
    ("huge-offset", gguf_file([ARCH], [tinfo("a", [8], 0, 2 ** 63)], DATA), "a", "run past the end"),
    ("overlap", gguf_file([ARCH], [tinfo("a", [16]), tinfo("b", [8], 0, 32)], DATA * 3), "b", "overlap"),
    ("duplicate-tensor", gguf_file([ARCH], [tinfo("a", [8]), tinfo("a", [8], 0, 32)], DATA * 2), "a", "duplicate"),
    ("truncated-infos", gguf_file([ARCH], ONE, align=1)[:-6] + b"\0" * 2, "a", "past the end"),
]


@pytest.mark.parametrize("case,data,tensor,fault", CASES, ids=[c[0] for c in CASES])
def test_gguf_corpus(tmp_path, case, data, tensor, fault):
    path = tmp_path / f"{case}.gguf"
    path.write_bytes(data)
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match=fault) as info:
        scan(path)
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert info.value.path == str(path) and str(path) in str(info.value)
    assert info.value.tensor == tensor
    assert elapsed < 0.5 and peak < (1 << 20), (case, elapsed, peak)
    from moepy.io import open_gguf
    with pytest.raises(CheckpointError):
        open_gguf(path)


def test_gguf_corpus_is_large_enough():
    assert len(CASES) >= 20


def _valid(tmp_path):
    p = tmp_path / "ok.gguf"
    w = gguf.GGUFWriter(str(p), "olmoe")
    w.add_block_count(1)
    w.add_array("tokenizer.ggml.tokens", ["a", "bb", "ccc"])
    w.add_array("x.ints", [1, 2, 3])
    w.add_tensor("token_embd.weight", np.arange(64, dtype=np.float32).reshape(2, 32))
    w.add_tensor("q", gguf.quants.quantize(np.ones((2, 32), np.float32), gguf.GGMLQuantizationType.Q8_0),
                 raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    return p.read_bytes()


def test_valid_file_scans(tmp_path):
    meta, infos, start, version = scan_bytes(tmp_path, _valid(tmp_path))
    assert version == 3 and meta["x.ints"] == [1, 2, 3]
    assert {i[0]: i[1] for i in infos} == {"token_embd.weight": (2, 32), "q": (2, 32)}


def scan_bytes(tmp_path, data, name="f.gguf"):
    p = tmp_path / name
    p.write_bytes(data)
    return scan(p)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_fuzz_mutated_gguf(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("fz")
    base = bytearray(_valid(tmp))
    header_end = len(base) - 64 - 68  # mutate the header region mostly
    flips = data.draw(st.lists(st.tuples(st.integers(0, max(header_end, 8)), st.integers(0, 255)), min_size=1,
                               max_size=4))
    for pos, val in flips:
        base[pos] = val
    cut = data.draw(st.integers(8, len(base)))
    blob = bytes(base[:cut])
    try:
        scan_bytes(tmp, blob)
    except CheckpointError:
        return
    # accepted by the validating pass: the gguf reader must then read it without tripping
    gguf.GGUFReader(str(tmp / "f.gguf"))
