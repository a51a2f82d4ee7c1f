"""Peak RSS of loading an OLMoE-shaped MoE layer stack (H 2048, I 1024, E 64, top-8) from disk, in bf16 and int4,
against the size of the weights on disk. Each load runs in a fresh process (peak = ru_maxrss of that process;
anon / file = RssAnon / RssFile after the load, from /proc/self/status; peak anon = the largest RssAnon the parent
saw polling /proc/<pid>/status every millisecond while the child ran: the heap alone, without the checkpoint's
mapped file pages, so two copies of the weights in memory show there and nowhere else).

    python benchmarks/bench_io_rss.py [--layers 2] [--dir /tmp/moepy_rss]    prints a table, writes rss.json
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

H, I, E, K = 2048, 1024, 64, 8


def prepare(d, L):
    import ml_dtypes
    import numpy as np
    from moepy.io import save_file
    os.makedirs(d, exist_ok=True)
    cfg = {"model_type": "olmoe", "architectures": ["OlmoeForCausalLM"], "hidden_size": H, "intermediate_size": I,
           "num_experts": E, "num_experts_per_tok": K, "num_hidden_layers": L, "num_attention_heads": 16,
           "num_key_value_heads": 16, "vocab_size": 50304, "norm_topk_prob": False, "torch_dtype": "bfloat16"}
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    rng = np.random.default_rng(0)
    wm = {}
    for i in range(L):
        t = {f"model.layers.{i}.mlp.gate.weight": (rng.standard_normal((E, H)) * 0.02).astype(ml_dtypes.bfloat16)}
        for e in range(E):
            for n, shape in (("gate_proj", (I, H)), ("up_proj", (I, H)), ("down_proj", (H, I))):
                t[f"model.layers.{i}.mlp.experts.{e}.{n}.weight"] = \
                    (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(ml_dtypes.bfloat16)
        name = f"model-{i + 1:05d}-of-{L:05d}.safetensors"
        save_file(t, os.path.join(d, name), {"format": "pt"})
        wm.update({k: name for k in t})
        del t
    json.dump({"metadata": {}, "weight_map": wm}, open(os.path.join(d, "model.safetensors.index.json"), "w"))


def status():
    out = {}
    for line in open("/proc/self/status"):
        for k in ("VmRSS", "RssAnon", "RssFile"):
            if line.startswith(k + ":"):
                out[k] = int(line.split()[1]) * 1024
    return out


def load(mode, d, L):
    from moepy.io import open_checkpoint
    from moepy.moe import MoELayer
    t0 = time.perf_counter()
    layers = []
    if mode in ("hf-bf16", "hf-int4"):
        ck = open_checkpoint(d)
        for i in range(L):
            if mode == "hf-bf16":
                layers.append(MoELayer.from_hf(ck.config, ck, i, "bfloat16"))
            else:
                # bf16 checkpoint: a bf16 intermediate is exact; quantized expert by expert from its panels
                layers.append(MoELayer.from_hf(ck.config, ck, i, "bfloat16", quantize="int4", group_size=32))
    else:  # moepy's own layer files (int4-mmap: the blocks used in place from the map)
        fmt = mode.split("-")[1]  # bf16 / int4
        for i in range(L):
            layers.append(MoELayer.load(os.path.join(d, f"moepy-{fmt}", f"layer{i}.safetensors"),
                                        mmap=mode.endswith("-mmap")))
    dt = time.perf_counter() - t0
    st = status()
    packed = sum(m.nbytes()["routed"] for m in layers)
    print(json.dumps({"mode": mode, "seconds": dt, "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "anon": st.get("RssAnon"), "file": st.get("RssFile"), "packed": packed}))


def save_moepy(d, L):
    from moepy.io import open_checkpoint
    from moepy.moe import MoELayer
    ck = open_checkpoint(d)
    for fmt in ("bf16", "int4"):
        os.makedirs(os.path.join(d, f"moepy-{fmt}"), exist_ok=True)
        for i in range(L):
            m = MoELayer.from_hf(ck.config, ck, i, "bfloat16") if fmt == "bf16" else \
                MoELayer.from_hf(ck.config, ck, i, "float32", quantize="int4", group_size=32)
            m.save(os.path.join(d, f"moepy-{fmt}", f"layer{i}.safetensors"))
            del m


def disk(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path) if f.endswith(".safetensors"))


def run_polled(cmd):
    """(stdout, peak RssAnon in bytes) of cmd, its /proc status polled about every millisecond."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak, path = 0, f"/proc/{p.pid}/status"
    while p.poll() is None:
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        peak = max(peak, int(line.split()[1]) * 1024)
                        break
        except OSError:
            pass
        time.sleep(0.001)
    out, err = p.communicate()
    if p.returncode:
        raise subprocess.CalledProcessError(p.returncode, cmd, out, err)
    return out, peak


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--dir", default="/tmp/moepy_rss")
    ap.add_argument("--child", nargs=2)
    a = ap.parse_args()
    if a.child:
        {"prepare": lambda: prepare(a.dir, a.layers), "save": lambda: save_moepy(a.dir, a.layers)}.get(
            a.child[0], lambda: load(a.child[1], a.dir, a.layers))()
        return
    run = lambda *args: subprocess.run([sys.executable, __file__, "--dir", a.dir, "--layers", str(a.layers),  # noqa
                                        "--child", *args], check=True, capture_output=True, text=True).stdout
    if not os.path.exists(os.path.join(a.dir, "model.safetensors.index.json")):
        run("prepare", "-")
    if not os.path.exists(os.path.join(a.dir, "moepy-int4", f"layer{a.layers - 1}.safetensors")):
        run("save", "-")
    sizes = {"hf-bf16": disk(a.dir), "hf-int4": disk(a.dir), "moepy-bf16": disk(os.path.join(a.dir, "moepy-bf16")),
             "moepy-int4": disk(os.path.join(a.dir, "moepy-int4"))}
    sizes["moepy-int4-mmap"] = sizes["moepy-int4"]
    rows = []
    for mode in ("hf-bf16", "hf-int4", "moepy-bf16", "moepy-int4", "moepy-int4-mmap"):
        out, peak_anon = run_polled([sys.executable, __file__, "--dir", a.dir, "--layers", str(a.layers),
                                     "--child", "load", mode])
        r = json.loads(out.strip().splitlines()[-1])
        r["disk"] = sizes[mode]
        r["peak_anon"] = peak_anon
        rows.append(r)
    print(f"OLMoE-shaped stack: {a.layers} layers of H {H}, I {I}, E {E} (routed experts + router)")
    print(f"{'load':<16}{'disk MB':>9}{'packed MB':>10}{'peak RSS MB':>12}{'peak/disk':>10}{'peak anon MB':>13}"
          f"{'anon MB':>9}{'file MB':>9}{'s':>7}")
    for r in rows:
        print(f"{r['mode']:<16}{r['disk'] / 1e6:>9.0f}{r['packed'] / 1e6:>10.0f}{r['peak'] / 1e6:>12.0f}"
              f"{r['peak'] / r['disk']:>10.2f}{r['peak_anon'] / 1e6:>13.0f}{r['anon'] / 1e6:>9.0f}"
              f"{r['file'] / 1e6:>9.0f}{r['seconds']:>7.1f}")
    json.dump(rows, open(os.path.join(a.dir, "rss.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
