"""int8 next to fp32 on this CPU: ``gr00t-trt bench`` of two exports of one checkpoint, each compared with
the PyTorch reference in the same run, and the table of stage p50s side by side.

Each export is benchmarked by the product's own ``bench`` command (ONNX Runtime CPU, the runtime's session
options: int8 graphs at ORT_ENABLE_ALL, where DequantizeLinear→MatMul becomes MatMulIntegerToFloat), one
after the other; ``--ort-profile`` also writes which ORT kernels ran on each int8 graph (the hot GEMMs
must be integer kernels, not DequantizeLinear + fp32 MatMul).

    gr00t-trt make-checkpoint ck-small --preset small
    gr00t-trt export -c ck-small --out exp-small --embodiment libero_panda
    gr00t-trt export -c ck-small --out exp-small-int8 --embodiment libero_panda --precision int8
    python benchmarks/int8_cpu.py ck-small exp-small exp-small-int8 --out benchmarks/results/int8_small_cpu
    # full size (quiet machine, ~1 h): the same with --preset full and --iters 5 --reference-mode process
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
from pathlib import Path

STAGES = ("vision", "backbone", "dit_context", "denoise_0", "denoise_1", "denoise_2", "denoise_3", "pipeline")


def bench(export: Path, checkpoint: Path, out: Path, args) -> dict:
    command = [sys.executable, "-m", "gr00t_trt.cli", "bench", str(export), "--backend", "ort",
               "--iters", str(args.iters), "--warmup", str(args.warmup), "--compare-reference", str(checkpoint),
               "--reference-iters", str(args.reference_iters), "--reference-mode", args.reference_mode,
               "--embodiment", args.embodiment, "--json", str(out)]
    subprocess.run(command, check=True)
    return json.loads(out.read_text())


def _session_and_feeds(graph: Path, seed: int = 0):
    """A runtime-configured CPU session of ``graph`` and random feeds at the export's opt dims."""
    import numpy as np
    import onnxruntime as ort

    from gr00t_trt.runtime.ort_backend import cpu_session, optimization_level

    manifest = json.loads((graph.parent / "manifest.json").read_text())
    dims = {name: bounds[1] for name, bounds in manifest["dynamic_dims"].items()}
    options = ort.SessionOptions()
    options.graph_optimization_level = optimization_level(ort, manifest["graphs"][graph.stem]["precision"])
    session = cpu_session(graph, options)
    rng = np.random.default_rng(seed)
    feeds = {}
    for tensor in session.get_inputs():
        shape = [d if isinstance(d, int) else dims.get(d, 1) for d in tensor.shape]
        if "float" in tensor.type:
            feeds[tensor.name] = rng.standard_normal(shape).astype(np.float32)
        else:  # masks all attended, ids and steps 0
            feeds[tensor.name] = np.ones(shape, bool) if "bool" in tensor.type else np.zeros(shape, np.int64)
    return session, feeds


def interleaved_graphs(fp32: Path, int8: Path, graphs=("backbone", "dit"), rounds: int = 30) -> dict:
    """Each graph of both exports timed alone, alternating fp32/int8 call by call in one process, so a
    loaded machine slows both alike: median ms each side and the median of per-round ratios."""
    import statistics
    import time

    result = {}
    for name in graphs:
        sides = {p: _session_and_feeds(folder / f"{name}.onnx") for p, folder in (("fp32", fp32), ("int8", int8))}
        for session, feeds in sides.values():
            session.run(None, feeds)
        times: dict[str, list[float]] = {"fp32": [], "int8": []}
        for _ in range(rounds):
            for p, (session, feeds) in sides.items():
                started = time.perf_counter()
                session.run(None, feeds)
                times[p].append((time.perf_counter() - started) * 1e3)
        ratios = [a / b for a, b in zip(times["fp32"], times["int8"], strict=True)]
        result[name] = {"fp32_ms": statistics.median(times["fp32"]), "int8_ms": statistics.median(times["int8"]),
                        "speedup": statistics.median(ratios), "rounds": rounds}
    return result


def ort_profile(graph: Path) -> dict[str, float]:
    """ms per ORT op type over 5 runs of ``graph`` on opt-shaped random inputs (kernel time only)."""
    import onnxruntime as ort

    from gr00t_trt.runtime.ort_backend import cpu_session, optimization_level

    manifest = json.loads((graph.parent / "manifest.json").read_text())
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.graph_optimization_level = optimization_level(ort, manifest["graphs"][graph.stem]["precision"])
    session = cpu_session(graph, options)
    _, feeds = _session_and_feeds(graph)
    for _ in range(5):
        session.run(None, feeds)
    trace = Path(session.end_profiling())
    times: dict[str, float] = collections.Counter()
    for event in json.loads(trace.read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            times[event["args"]["op_name"]] += event["dur"] / 1000 / 5
    trace.unlink()
    return dict(sorted(times.items(), key=lambda item: -item[1]))


def linear_graph(m: int, k: int, n: int, int8: bool) -> bytes:
    """One Linear [m, k] @ [k, n] as ONNX: fp32, or the int8 export's form (per-tensor symmetric activation
    Q/DQ, per-output-channel int8 weight DQ, zero points 0)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    weight = (np.random.default_rng(0).standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
    if int8:
        scale = np.abs(weight).max(axis=0) / 127
        inits = [numpy_helper.from_array(np.round(weight / scale).astype(np.int8), "wq"),
                 numpy_helper.from_array(scale.astype(np.float32), "ws"), numpy_helper.from_array(np.zeros(n, np.int8), "wz"),
                 numpy_helper.from_array(np.array(4 / 127, np.float32), "xs"), numpy_helper.from_array(np.array(0, np.int8), "xz")]
        nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
                 helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
                 helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=1),
                 helper.make_node("MatMul", ["xd", "w"], ["y"])]
    else:
        inits, nodes = [numpy_helper.from_array(weight, "w")], [helper.make_node("MatMul", ["x", "w"], ["y"])]
    graph = helper.make_graph(nodes, "linear", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, m, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, m, n])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]).SerializeToString()


def gemm_sweep(sizes=((256, 256, 256), (256, 1024, 1024), (256, 2048, 2048), (256, 2048, 6144)),
               rounds: int = 15) -> list[dict]:
    """fp32 vs int8 for one GEMM per size, interleaved, in the runtime's sessions (int8: MatMulIntegerToFloat,
    with the exact-path entry only where the CPU lacks VNNI) and in an int8 session that always asks for
    ORT's exact path: whether this CPU's integer GEMM beats its fp32 one, by how much at each size, and what
    the exact path costs here — the ceiling of any int8 graph on this CPU."""
    import statistics
    import time

    import numpy as np
    import onnxruntime as ort

    from gr00t_trt.runtime.ort_backend import X64_QUANT_PRECISION, cpu_session, optimization_level

    rows = []
    for m, k, n in sizes:
        sessions = {}
        for side in ("fp32", "int8", "int8_exact"):
            options = ort.SessionOptions()
            options.graph_optimization_level = optimization_level(ort, side[:4])
            if side == "int8_exact":
                options.add_session_config_entry(X64_QUANT_PRECISION, "1")
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "linear.onnx"
                path.write_bytes(linear_graph(m, k, n, side != "fp32"))
                sessions[side] = cpu_session(path, options)
        x = {"x": np.random.default_rng(1).standard_normal((1, m, k)).astype(np.float32)}
        outputs = {side: s.run(None, x)[0].ravel() for side, s in sessions.items()}
        times: dict[str, list[float]] = {side: [] for side in sessions}
        for _ in range(rounds):
            for side, session in sessions.items():
                started = time.perf_counter()
                session.run(None, x)
                times[side].append((time.perf_counter() - started) * 1e3)
        row = {"m": m, "k": k, "n": n, **{f"{side}_ms": statistics.median(t) for side, t in times.items()}}
        for side in ("int8", "int8_exact"):
            a, b = outputs["fp32"], outputs[side]
            row[f"{side}_speedup"] = statistics.median(f / i for f, i in zip(times["fp32"], times[side], strict=True))
            row[f"{side}_cosine"] = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
        rows.append(row)
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, nargs="?")
    parser.add_argument("fp32", type=Path, nargs="?", help="the fp32 export")
    parser.add_argument("int8", type=Path, nargs="?", help="the int8 export of the same checkpoint")
    parser.add_argument("--out", type=Path, required=True, help="STEM: writes STEM.json and STEM.md")
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--reference-iters", type=int, default=15)
    parser.add_argument("--reference-mode", default="interleaved")
    parser.add_argument("--embodiment", default="libero_panda")
    parser.add_argument("--ort-profile", action="store_true")
    parser.add_argument("--gemm-sweep", action="store_true",
                        help="also time one fp32 and one int8 GEMM per size (this CPU's int8 ceiling)")
    parser.add_argument("--graphs-only", action="store_true",
                        help="only the interleaved per-graph timing (robust on a loaded machine), no bench runs")
    parser.add_argument("--gemm-only", action="store_true", help="only the GEMM sweep (no checkpoint, no exports)")
    args = parser.parse_args()
    if args.gemm_only:
        from gr00t_trt.bench.machine import machine_info

        rows = gemm_sweep()
        lines = ["| GEMM m×k×n | fp32 ms | int8 ms (runtime session) | speed-up | int8 ms (exact-path entry) | speed-up |",
                 "|---|---|---|---|---|---|"]
        lines += [f"| {r['m']}×{r['k']}×{r['n']} | {r['fp32_ms']:.2f} | {r['int8_ms']:.2f} | {r['int8_speedup']:.2f}× | "
                  f"{r['int8_exact_ms']:.2f} | {r['int8_exact_speedup']:.2f}× |" for r in rows]
        args.out.with_suffix(".json").write_text(json.dumps({"machine": machine_info(), "gemm_sweep": rows}, indent=1))
        args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        return
    if None in (args.checkpoint, args.fp32, args.int8):
        parser.error("CHECKPOINT, FP32 and INT8 are required unless --gemm-only")
    if args.graphs_only:
        result = {"graphs": interleaved_graphs(args.fp32, args.int8)}
        if args.gemm_sweep:
            result["gemm_sweep"] = gemm_sweep()
        if args.ort_profile:
            result["ort_profile_ms"] = {g: ort_profile(args.int8 / f"{g}.onnx") for g in ("backbone", "dit")}
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=1))
        print(json.dumps(result, indent=1))
        return
    runs = {p: bench(export, args.checkpoint, args.out.with_name(f"{args.out.name}_{p}.json"), args)
            for p, export in (("fp32", args.fp32), ("int8", args.int8))}
    rows = []
    for stage in (*STAGES, "end to end"):
        got = {p: (r["end_to_end_ms"] if stage == "end to end" else r["stages_ms"].get(stage, {})).get("p50")
               for p, r in runs.items()}
        if None not in got.values():
            rows.append((stage, got["fp32"], got["int8"], got["fp32"] / got["int8"]))
    reference = {p: r["reference"]["rows_p50_ms"] for p, r in runs.items() if r.get("reference")}
    result = {"rows": rows, "reference": reference, "header": runs["int8"]["header"]}
    result["graphs"] = interleaved_graphs(args.fp32, args.int8)
    if args.ort_profile:
        result["ort_profile_ms"] = {g: ort_profile(args.int8 / f"{g}.onnx") for g in ("backbone", "dit")}
    lines = ["| stage | fp32 p50 ms | int8 p50 ms | int8 speed-up |", "|---|---|---|---|"]
    lines += [f"| {s} | {a:.2f} | {b:.2f} | {r:.2f}× |" for s, a, b, r in rows]
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
