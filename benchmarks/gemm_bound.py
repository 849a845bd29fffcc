"""What bounds one exported graph on ONNX Runtime CPU: its weight GEMMs, each timed alone at its own shape.

``bench`` divides each stage's time by a floor built from two machine rates (a large square GEMM and a
one-row GEMV). For a graph whose GEMMs all have few rows — the DiT of a denoising step runs on 1 + H
tokens (51 at N1.6 sizes) — ONNX Runtime's GEMM does not reach the square-GEMM rate even alone. This
script measures how far that goes: it lists every MatMul of the graph with a weight initializer by shape
(rows m × k → n), times each shape alone on ONNX Runtime (distinct weights per call, more of them than the
caches hold, so weights stream from memory as in the graph), and compares

- the graph's measured time,
- Σ over its GEMMs of FLOPs / (the rate ONNX Runtime reaches at that shape alone) — the "GEMM-shape
  bound": the graph cannot beat it on this engine without changing the GEMMs themselves,
- the floors ``bench`` uses: FLOPs / square-GEMM rate and weight bytes / GEMV bandwidth.

    python benchmarks/gemm_bound.py EXPORT_DIR --graph dit --seq-len 224
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from gr00t_trt.base.files import write_atomic, write_json
from gr00t_trt.bench.cpu_limits import best_seconds, measure_cpu_limits
from gr00t_trt.bench.machine import CpuMeter, machine_info
from gr00t_trt.contract.manifest import load_manifest
from gr00t_trt.runtime.ort_backend import OrtBackend, cpu_session

REPO = Path(__file__).resolve().parents[1]
#: weight bytes the timed copies of one shape add up to: far beyond any CPU cache
STREAMED_BYTES = 256 * 2**20


def weight_gemms(path: Path) -> Counter:
    """(k, n) → how many MatMul/Gemm nodes multiply by a [k, n] weight initializer."""
    model = onnx.load(str(path), load_external_data=False)
    weights = {t.name: tuple(t.dims) for t in model.graph.initializer if len(t.dims) == 2}
    shapes: Counter = Counter()
    for node in model.graph.node:
        if node.op_type in ("MatMul", "Gemm") and len(node.input) > 1 and node.input[1] in weights:
            shapes[weights[node.input[1]]] += 1
    return shapes


def shape_rate(m: int, k: int, n: int, threads: int, repeats: int, folder: Path) -> float:
    """GFLOP/s of ONNX Runtime's MatMul at [m, k] @ [k, n], over distinct weights streamed from memory."""
    copies = max(1, STREAMED_BYTES // (k * n * 4))
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("MatMul", ["x", f"w{i}"], [f"y{i}"]) for i in range(copies)]
    inits = [numpy_helper.from_array(rng.standard_normal((k, n), dtype=np.float32), f"w{i}") for i in range(copies)]
    graph = helper.make_graph(nodes, "gemms", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
                              [helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, [m, n]) for i in range(copies)],
                              inits)
    path = folder / f"gemm_{m}x{k}x{n}.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path),
                    save_as_external_data=True, location=path.name + ".data")
    session = cpu_session(path, _options(threads))
    x = rng.standard_normal((m, k), dtype=np.float32)
    best = best_seconds(lambda: session.run(None, {"x": x}), repeats)  # after one warm-up call
    return 2.0 * m * k * n * copies / best / 1e9


def graph_ms(path: Path, inputs, dims: dict[str, int], threads: int, repeats: int) -> list[float]:
    """Milliseconds per call of the graph on random inputs of the given dims (the product's session);
    integer inputs (step, ids) are zeros, masks' additive biases random like everything else."""
    session = cpu_session(path, _options(threads))
    rng = np.random.default_rng(0)
    feeds = {}
    for spec in inputs:
        shape = spec.shape(dims)
        feeds[spec.name] = (np.zeros(shape, dtype=spec.dtype) if not spec.dtype.startswith("float")
                            else rng.standard_normal(shape).astype(spec.dtype))
    session.run(None, feeds)
    return [_timed(lambda: session.run(None, feeds)) * 1e3 for _ in range(repeats)]


def _options(threads: int):
    backend = OrtBackend(device="cpu", threads=threads)
    backend.activate()
    return backend.session_options("fp32")


def _timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("export", type=Path, help="export directory (fp32)")
    p.add_argument("--graph", default="dit", help="graph name in the manifest (default: dit)")
    p.add_argument("--seq-len", type=int, default=224, help="backbone tokens S fed to the graph")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", type=Path, default=None, help="output stem (default benchmarks/results/gemm_bound_<graph>)")
    args = p.parse_args(argv)
    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/gemm_bound.py", *(argv or sys.argv[1:])])

    manifest = load_manifest(args.export, verify_files=False)
    entry = manifest.graphs[args.graph]
    if entry.precision != "fp32":
        raise SystemExit(f"{args.graph} is {entry.precision}: this script times fp32 graphs")
    dims = {**manifest.dims, "B": 1, "S": args.seq_len}
    rows = 1 + manifest.dims["H"] if entry.kind == "dit" else args.seq_len
    path = args.export / entry.file
    meter = CpuMeter().start()
    limits = measure_cpu_limits(args.threads)
    measured = graph_ms(path, entry.inputs, {**dims, **entry.dims}, args.threads, args.repeats)
    shapes = weight_gemms(path)
    with tempfile.TemporaryDirectory(prefix="gemm_bound_") as tmp:
        rates = {(k, n): shape_rate(rows, k, n, args.threads, args.repeats, Path(tmp)) for k, n in shapes}
    others = meter.foreign_cores() or 0.0

    peak_gflops = limits.tflops["fp32"] * 1e3
    lines = []
    gemm_ms = flops_total = bytes_total = 0.0
    for (k, n), count in sorted(shapes.items()):
        flops = 2.0 * rows * k * n * count
        ms = flops / (rates[(k, n)] * 1e9) * 1e3
        gemm_ms, flops_total, bytes_total = gemm_ms + ms, flops_total + flops, bytes_total + 4.0 * k * n * count
        lines.append({"m": rows, "k": k, "n": n, "count": count, "gflop": flops / 1e9,
                      "gflops_at_shape": rates[(k, n)], "of_square_rate": rates[(k, n)] / peak_gflops, "ms": ms})
    median = statistics.median(measured)
    compute_floor = flops_total / (peak_gflops * 1e9) * 1e3
    stream_floor = bytes_total / (limits.memory_gbs * 1e9) * 1e3
    result = {
        "command": command, "machine": machine_info(), "other_processes_cores": others,
        "graph": args.graph, "rows": rows, "seq_len": args.seq_len, "threads": args.threads,
        "square_gemm_gflops": peak_gflops, "gemv_bandwidth_gbs": limits.memory_gbs,
        "measured_ms": measured, "measured_ms_median": median, "gemms": lines,
        "gemm_shape_bound_ms": gemm_ms, "compute_floor_ms": compute_floor, "weight_streaming_floor_ms": stream_floor,
    }
    stem = args.out or REPO / "benchmarks" / "results" / f"gemm_bound_{args.graph}"
    write_json(stem.with_suffix(".json"), result)
    write_atomic(stem.with_suffix(".md"), _markdown(result).encode())
    print(_markdown(result))
    return 0


def _markdown(r: dict) -> str:
    m = r["machine"]
    git = m.get("git") or {}
    revision = f"{git.get('commit', '?')}{' (dirty)' if git.get('dirty') else ''}"
    out = [f"# What bounds `{r['graph']}` on ONNX Runtime CPU", "",
           f"- CPU: {m['cpu']}, {r['threads']} threads; onnxruntime {m['versions'].get('onnxruntime')}; "
           f"git {revision}; other processes used {r['other_processes_cores']:.2f} cores",
           f"- command: `{r['command'].split('  #')[0]}`",
           f"- {r['rows']} rows per GEMM (S = {r['seq_len']}); square-GEMM rate {r['square_gemm_gflops']:.0f} GFLOP/s, "
           f"GEMV weight streaming {r['gemv_bandwidth_gbs']:.1f} GB/s", "",
           "| GEMM (m × k → n) | count | GFLOP | GFLOP/s at this shape | ÷ square rate | ms |", "|---|---|---|---|---|---|"]
    for g in r["gemms"]:
        out.append(f"| {g['m']} × {g['k']} → {g['n']} | {g['count']} | {g['gflop']:.2f} | {g['gflops_at_shape']:.0f} "
                   f"| {g['of_square_rate']:.2f} | {g['ms']:.1f} |")
    med = r["measured_ms_median"]
    out += ["", "| | ms | measured ÷ it |", "|---|---|---|",
            f"| measured (median of {len(r['measured_ms'])}) | {med:.1f} | 1.00 |",
            f"| GEMM-shape bound: Σ FLOPs / rate at each shape | {r['gemm_shape_bound_ms']:.1f} | {med / r['gemm_shape_bound_ms']:.2f} |",
            f"| compute floor: FLOPs / square-GEMM rate | {r['compute_floor_ms']:.1f} | {med / r['compute_floor_ms']:.2f} |",
            f"| weight-streaming floor: weight bytes / GEMV bandwidth | {r['weight_streaming_floor_ms']:.1f} "
            f"| {med / r['weight_streaming_floor_ms']:.2f} |", ""]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
