"""`gr00t-trt demo`: the whole flow on a tiny synthetic checkpoint, for a newcomer.

make a checkpoint (real layout, random weights) → export the ONNX graphs → run a control step on the
embedded default backend (ONNX Runtime) → verify against the PyTorch reference. Re-running reuses
nothing: each run starts from a fresh work directory so what it shows is what it did.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from rich.console import Console


def run_demo(workdir: Path, console: Console, *, embodiment: str = "libero_panda") -> bool:
    """Run the demo in ``workdir``; returns True when verification passed."""
    from .cli import _render_actions, _render_parity, _render_timings
    from .export.driver import ExportOptions, export_checkpoint
    from .model.synthetic import make_checkpoint
    from .observations import synthetic_observation
    from .runtime.policy import Policy
    from .verify import verify_export

    workdir = Path(workdir)
    checkpoint, export_dir = workdir / "checkpoint-tiny", workdir / "export-tiny"
    for old in (checkpoint, export_dir):
        if old.exists():
            shutil.rmtree(old)
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    console.rule("1/4  synthetic checkpoint (real N1.6 layout, tiny sizes, random weights)")
    make_checkpoint(checkpoint, "tiny", seed=0)
    console.print(f"wrote {checkpoint}")

    console.rule("2/4  export to ONNX")
    with console.status("exporting graphs") as status:
        manifest = export_checkpoint(
            checkpoint, export_dir, ExportOptions(), lambda name, s: status.update(f"{name}: {s}")
        )
    for name, graph in manifest.graphs.items():
        console.print(f"  {name:<16} {graph.precision}  inputs: {', '.join(t.name for t in graph.inputs)}")

    console.rule("3/4  one control step on ONNX Runtime")
    policy = Policy.load(export_dir, backend="ort")
    obs = synthetic_observation(policy.preprocessor.spec, embodiment, seed=0, image_sizes=manifest.image_sizes)
    actions = policy.get_action(obs, embodiment=embodiment, seed=0)
    actions = policy.get_action(obs, embodiment=embodiment, seed=0)  # second call: steady-state timings
    _render_actions(actions)
    _render_timings(policy.last_timings, "timings, steady state (ms)")

    console.rule("4/4  verify against the PyTorch reference")
    report = verify_export(export_dir, checkpoint, backend="ort", embodiments=(embodiment,), seeds=2)
    _render_parity(report)
    verdict = "[bold green]PASSED[/]" if report.passed else "[bold red]FAILED[/]"
    console.print(f"{verdict} — demo finished in {time.perf_counter() - started:.1f}s; files in {workdir}")
    return report.passed
