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
#: (name, mode, ModelOpt options, writer): ModelOpt's quantiser with the options the export used before
#: issue 20 ("before") and after, and the lean writer the export uses now (qdq_writer.py)
CONFIGS = [
    ("baseline (imports + feeds, no quantisation)", None, None, "lean"),
    ("fp8 lean", "fp8", None, "lean"),
    ("int8 lean", "int8", None, "lean"),
    ("fp8 ModelOpt", "fp8", {}, "modelopt"),
    ("fp8 ModelOpt per-node calibration", "fp8", {"calibrate_per_node": True}, "modelopt"),
    ("int8 ModelOpt before (MHA analysis + GEMV detection)", "int8",
     {"disable_mha_qdq": False, "enable_gemv_detection_for_trt": True}, "modelopt"),
    ("int8 ModelOpt", "int8", None, "modelopt"),  # None: quantize.MODE_OPTIONS["int8"]
    ("int8 ModelOpt + per-node calibration", "int8", {"calibrate_per_node": True}, "modelopt"),
]

CHILD = """
import json, sys
import numpy as np
from pathlib import Path
from gr00t_trt.export import quantize
request = json.loads(sys.argv[1])
if request["options"] is not None and request["mode"] is not None:
    quantize.MODE_OPTIONS[request["mode"]] = {**quantize.MODE_OPTIONS[request["mode"]], **request["options"]}
if request.get("trace"):
    sys.path.insert(0, request["trace"])
    import int8_memory
    int8_memory.trace_phases()
with np.load(request["feeds"]) as stored:
    feeds = quantize._StoredFeeds(stored, request["names"])  # what the export's child reads: one sample at a time
    if request["feeds_in_memory"]:  # how the child read them before: all samples for the whole run
        feeds = list(feeds)
    if request["mode"] is None:
        import modelopt.onnx.quantization  # noqa: F401 — what every configuration imports
        print(0)
        raise SystemExit
    got = quantize.quantize_graph(Path(request["path"]), request["kind"], feeds, isolate=False, mode=request["mode"],
                                  high_precision=request["high_precision"], writer=request["writer"])
print(len(got))
"""

#: the steps of a quantisation whose memory ``--trace`` reports: (module, attribute) of each function
TRACED = [
    ("modelopt.onnx.quantization.quantize", "_preprocess_onnx"),
    ("modelopt.onnx.quantization.quantize", "load_onnx_model"),
    ("modelopt.onnx.quantization.quantize", "quantize_int8"),
    ("modelopt.onnx.quantization.quantize", "quantize_fp8"),
    ("modelopt.onnx.quantization.int8", "quantize_static"),
    ("modelopt.onnx.quantization.int8", "_convert_to_runtime_precision"),
    ("onnxruntime.quantization.calibrate", "MinMaxCalibrater.collect_data"),
    ("onnxruntime.quantization.calibrate", "MinMaxCalibrater.compute_data"),
    ("onnxruntime.quantization.qdq_quantizer", "QDQQuantizer.quantize_model"),
    ("modelopt.onnx.quantization.quantize", "save_onnx"),
    ("onnx_graphsurgeon", "import_onnx"),
    ("gr00t_trt.export.quantize", "_replace_graph"),
    ("gr00t_trt.export.qdq_writer", "activation_ranges"),
    ("gr00t_trt.export.qdq_writer", "insert_qdq"),
    ("modelopt.onnx.quantization.precision_utils", "_convert_to_runtime_precision"),
]


def trace_phases(period: float = 0.01) -> None:
    """In the quantisation child: sample the resident set every ``period`` s on a thread and wrap the
    ``TRACED`` functions, so that at exit each call prints its RSS on entry, its peak and its RSS on exit
    (MB). Resident memory counts what ONNX Runtime allocates in C++, which tracemalloc cannot see."""
    import atexit
    import functools
    import importlib
    import threading

    page = os.sysconf("SC_PAGE_SIZE") / 2**20
    samples: list[float] = []

    def rss() -> float:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * page

    def sample() -> None:
        while True:
            samples.append(rss())
            time.sleep(period)

    threading.Thread(target=sample, daemon=True).start()
    calls: list[tuple[str, float, float, float]] = []

    def wrap(label, function):
        @functools.wraps(function)
        def traced(*args, **kwargs):
            start, entry = len(samples), rss()
            try:
                return function(*args, **kwargs)
            finally:
                calls.append((label, entry, max([entry, rss(), *samples[start:]]), rss()))
        return traced

    for module_name, attribute in TRACED:
        module = importlib.import_module(module_name)
        owner_name, _, name = attribute.rpartition(".")
        owner = getattr(module, owner_name) if owner_name else module
        if hasattr(owner, name):
            setattr(owner, name, wrap(attribute, getattr(owner, name)))

    @atexit.register
    def report() -> None:
        print(json.dumps({"trace": [dict(zip(("call", "entry_mb", "peak_mb", "exit_mb"), c, strict=True)) for c in calls],
                          "peak_mb": max(samples, default=0.0)}))


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
            elif "bool" in tensor.type:  # masks: everything attended
                feed[tensor.name] = np.ones(shape, bool)
            else:
                feed[tensor.name] = np.full(shape, i % 4, np.int64)
        feeds.append(feed)
    return feeds


def measure(export: Path, graph: str, kind: str, mode: str, options, feeds_file: Path, names, work: Path,
            trace: bool = False, high_precision: str = "fp16", feeds_in_memory: bool = False,
            writer: str = "lean") -> dict:
    for suffix in ("", ".data"):
        shutil.copyfile(export / f"{graph}.onnx{suffix}", work / f"{graph}.onnx{suffix}")
    request = {"path": str(work / f"{graph}.onnx"), "kind": kind, "mode": mode, "options": options,
               "feeds": str(feeds_file), "names": names, "high_precision": high_precision, "feeds_in_memory": feeds_in_memory,
               "writer": writer, "trace": str(Path(__file__).parent) if trace and mode else None}
    env = dict(os.environ, TMPDIR=str(work), PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(request)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(child.pid, 0)
    out, err = child.stdout.read(), child.stderr.read()
    if status != 0:
        raise SystemExit(f"{mode} {options}: child failed ({status}): {err.strip().splitlines()[-1:]}")
    lines = out.strip().splitlines()
    traced = [json.loads(line) for line in lines if line.startswith('{"trace"')]
    row = {"peak_rss_mb": usage.ru_maxrss / 1024, "seconds": round(time.perf_counter() - started, 1),
           "gemms": int(next(line for line in reversed(lines) if not line.startswith("{")))}
    if traced:
        row["trace"] = traced[0]["trace"]
        for call in row["trace"]:
            print(f"    {call['call']:45s} entry {call['entry_mb']:7.0f}  peak {call['peak_mb']:7.0f}  exit {call['exit_mb']:7.0f} MB")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", type=Path, help="an fp32 export folder")
    parser.add_argument("--graph", default="dit")
    parser.add_argument("--samples", type=int, default=16, help="calibration feeds (4 observations × 4 steps = 16)")
    parser.add_argument("--graph-gb", type=float, default=3.3, help="graph size to extrapolate to (full DiT: 3.3)")
    parser.add_argument("--only", nargs="*", help="config names to run (default: all)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--high-precision", default="fp16", choices=("fp16", "fp32"),
                        help="the quantised graph's remainder: fp16 for a GPU export, fp32 for the CPU (int8 only)")
    parser.add_argument("--feeds-in-memory", action="store_true",
                        help="hold every calibration sample in the child, as it did before (default: read one at a time)")
    parser.add_argument("--trace", action="store_true", help="RSS on entry, peak and exit of each quantiser step")
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
        for name, mode, options, writer in CONFIGS:
            if args.only and name not in args.only:
                continue
            work = Path(tmp) / "work"
            work.mkdir()
            row = {"config": name, "mode": mode, "options": options, "writer": writer,
                   **measure(args.export, args.graph, kind, mode, options, feeds_file, names, work, args.trace,
                             args.high_precision, args.feeds_in_memory, writer)}
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
