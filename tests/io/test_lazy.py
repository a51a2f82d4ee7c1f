"""The lazy-memory property: opening a ~200 MB checkpoint and reading one small tensor costs a few MB of RSS."""
import os
import subprocess
import sys
import textwrap

import numpy as np

from moepy.io import save_file

CHILD = textwrap.dedent("""
    import sys, json
    def rss():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    import numpy as np, ml_dtypes, moepy.io
    from moepy.io import open_checkpoint
    before = rss()
    ck = open_checkpoint(sys.argv[1])
    small = float(np.asarray(ck["small"], dtype=np.float32).sum())
    mid = rss()
    big = ck["big.7"]  # a view: nothing read until touched
    after_view = rss()
    one_row = float(big[3].astype(np.float32).sum())
    print(json.dumps({"open_and_small": mid - before, "big_view": after_view - mid, "row": rss() - after_view,
                      "tensors": len(ck), "small": small}))
""")


def test_open_and_read_one_tensor_costs_a_few_mb(tmp_path):
    import ml_dtypes
    d = tmp_path / "big"
    d.mkdir()
    rng = np.random.default_rng(0)
    block = rng.standard_normal((1024, 1024)).astype(ml_dtypes.bfloat16)  # 2 MB
    # ~200 MB over 2 shards with an index
    shards = {}
    for s in range(2):
        t = {f"big.{s * 50 + i}": block for i in range(50)}
        if s == 0:
            t["small"] = np.arange(16, dtype=np.float32)
        name = f"model-{s + 1:05d}-of-00002.safetensors"
        save_file(t, d / name)
        shards.update({k: name for k in t})
    import json
    (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": shards}))
    size = sum(os.path.getsize(d / f) for f in os.listdir(d))
    assert size > 200e6
    out = subprocess.run([sys.executable, "-c", CHILD, str(d)], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    r = json.loads(out.stdout)
    assert r["tensors"] == 101 and r["small"] == 120.0
    assert r["open_and_small"] < 4e6, r
    assert r["big_view"] < 1e6, r
    assert r["row"] < 1e6, r
    print(f"\nRSS on a {size / 1e6:.0f} MB checkpoint: open + one small tensor +{r['open_and_small'] / 1e6:.2f} MB, "
          f"a 2 MB view +{r['big_view'] / 1e6:.2f} MB, one row of it +{r['row'] / 1e6:.2f} MB")
