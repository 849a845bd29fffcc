"""Peak RAM of the quantiser child (fp8 and int8), per ModelOpt option set, on one graph of an fp32 export.

Each configuration quantises a copy of the graph in a fresh interpreter (``quantize_graph(isolate=False)``,
what the export's child runs) and its peak RSS is read from the kernel's accounting of that child
(``os.wait4``: ru_maxrss, the high-water mark of resident memory). The ratio peak / graph size is what
extrapolates to the full-size DiT (3.3 GB fp32: ``--graph-gb 3.3``). Calibration feeds are random, shaped
at the export's opt dims — memory depends on shapes and sample count, not values.

    python benchmarks/int8_memory.py EXPORT_DIR --graph dit --samples 16           # small: ~2 min
    python benchmarks/int8_memory.py FULL_FP32_EXPORT --graph dit --samples 16    # full size, quiet machine
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: (name, mode, ModelOpt options): the options the export used before issue 20 ("before") and now
CONFIGS = [
    ("baseline (imports + feeds, no quantisation)", None, None),
    ("fp8", "fp8", {}),
    ("fp8 per-node calibration", "fp8", {"calibrate_per_node": True}),
    ("int8 before (MHA analysis + GEMV detection)", "int8", {"disable_mha_qdq": False, "enable_gemv_detection_for_trt": True}),
    ("int8 as exported", "int8", None),  # None: quantize.MODE_OPTIONS["int8"]
    ("int8 as exported + per-node calibration", "int8", {"calibrate_per_node": True}),
]

CHILD = """
import json, sys
import numpy as np
from pathlib import Path
from gr00t_trt.export import quantize
request = json.loads(sys.argv[1])
if request["options"] is not None and request["mode"] is not None:
    quantize.MODE_OPTIONS[request["mode"]] = {**quantize.MODE_OPTIONS[request["mode"]], **request["options"]}
with np.load(request["feeds"]) as stored:
    names = request["names"]
    feeds = [{n: stored[f"{i}/{n}"] for n in names} for i in range(len(stored.files) // len(names))]
if request["mode"] is None:
    import modelopt.onnx.quantization  # noqa: F401 — what every configuration imports
    print(0)
    raise SystemExit
got = quantize.quantize_graph(Path(request["path"]), request["kind"], feeds, isolate=False, mode=request["mode"],
                              high_precision=request["high_precision"])
print(len(got))
"""


def random_feeds(path: Path, manifest: dict, samples: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    import onnxruntime as ort

    dims = {name: bounds[1] for name, bounds in manifest["dynamic_dims"].items()}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    feeds = []
    for i in range(samples):
        feed = {}
        for tensor in session.get_inputs():
            shape = [d if isinstance(d, int) else dims.get(d, 1) for d in tensor.shape]
            if "float" in tensor.type:
                feed[tensor.name] = rng.standard_normal(shape).astype(np.float32)
            else:
                feed[tensor.name] = np.full(shape, i % 4, np.int64)
        feeds.append(feed)
    return feeds


def measure(export: Path, graph: str, kind: str, mode: str, options, feeds_file: Path, names, work: Path) -> dict:
    for suffix in ("", ".data"):
        shutil.copyfile(export / f"{graph}.onnx{suffix}", work / f"{graph}.onnx{suffix}")
    request = {"path": str(work / f"{graph}.onnx"), "kind": kind, "mode": mode, "options": options,
               "feeds": str(feeds_file), "names": names, "high_precision": "fp16"}
    env = dict(os.environ, TMPDIR=str(work), PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(request)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(child.pid, 0)
    out, err = child.stdout.read(), child.stderr.read()
    if status != 0:
        raise SystemExit(f"{mode} {options}: child failed ({status}): {err.strip().splitlines()[-1:]}")
    return {"peak_rss_mb": usage.ru_maxrss / 1024, "seconds": round(time.perf_counter() - started, 1),
            "gemms": int(out.strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", type=Path, help="an fp32 export folder")
    parser.add_argument("--graph", default="dit")
    parser.add_argument("--samples", type=int, default=16, help="calibration feeds (4 observations × 4 steps = 16)")
    parser.add_argument("--graph-gb", type=float, default=3.3, help="graph size to extrapolate to (full DiT: 3.3)")
    parser.add_argument("--only", nargs="*", help="config names to run (default: all)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    manifest = json.loads((args.export / "manifest.json").read_text())
    kind = manifest["graphs"][args.graph]["kind"]
    size = sum((args.export / f"{args.graph}.onnx{s}").stat().st_size for s in ("", ".data"))
    feeds = random_feeds(args.export / f"{args.graph}.onnx", manifest, args.samples)
    rows = []
    with tempfile.TemporaryDirectory(prefix="int8-memory-") as tmp:
        feeds_file = Path(tmp) / "feeds.npz"
        names = list(feeds[0])
        np.savez(feeds_file, **{f"{i}/{n}": f[n] for i, f in enumerate(feeds) for n in names})
        feed_mb = feeds_file.stat().st_size / 2**20
        for name, mode, options in CONFIGS:
            if args.only and name not in args.only:
                continue
            work = Path(tmp) / "work"
            work.mkdir()
            row = {"config": name, "mode": mode, "options": options, **measure(args.export, args.graph, kind, mode, options, feeds_file, names, work)}
            shutil.rmtree(work)
            base = rows[0]["peak_rss_mb"] if rows and rows[0]["mode"] is None else row["peak_rss_mb"] * (mode is None)
            # what the quantisation adds over the interpreter, per byte of graph, scaled to the full graph
            row["peak_over_graph"] = (row["peak_rss_mb"] - base) * 2**20 / size
            row["extrapolated_gb"] = row["peak_over_graph"] * args.graph_gb + base / 1024
            rows.append(row)
            print(f"{name:45s} peak {row['peak_rss_mb']:8.0f} MB = base + {row['peak_over_graph']:5.1f} × graph "
                  f"→ {row['extrapolated_gb']:5.1f} GB at {args.graph_gb} GB ({row['seconds']} s)", flush=True)
    result = {"export": str(args.export), "graph": args.graph, "graph_mb": size / 2**20, "feeds_mb": feed_mb,
              "samples": args.samples, "machine": platform.platform(), "cpus": os.cpu_count(), "rows": rows}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}))


if __name__ == "__main__":
    main()
