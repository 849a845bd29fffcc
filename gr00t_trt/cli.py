"""The ``gr00t-trt`` command line: a thin layer that parses options, calls the library and renders.

Every library error (``Gr00tTrtError``) is printed as one line and exits with status 1; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .errors import Gr00tTrtError

app = typer.Typer(
    name="gr00t-trt",
    help="Export, run and verify NVIDIA GR00T N1.6 policies on ONNX Runtime (TensorRT engines: coming next).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)
_state = {"debug": False}


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False) -> None:
    _state["debug"] = debug


def _friendly(fn):
    """Turn library errors into one red line and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Gr00tTrtError as exc:
            if _state["debug"]:
                raise
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


# ------------------------------------------------------------------------------------------ inspect
@app.command()
@_friendly
def inspect(
    checkpoint: Annotated[str, typer.Argument(help="Checkpoint folder or Hugging Face id (e.g. nvidia/GR00T-N1.6-3B).")],
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON here.")] = None,
) -> None:
    """Check a checkpoint's layout and count its parameters, reading only file headers (no weights)."""
    from .model.inspect import inspect_checkpoint

    report = inspect_checkpoint(checkpoint)
    _render_inspect(report)
    if json_out:
        json_out.write_text(json.dumps(report.to_dict(), indent=2) + "\n")


def _render_inspect(report) -> None:
    table = Table(title=f"Parameters — {report.checkpoint}")
    table.add_column("component")
    table.add_column("parameters", justify="right")
    table.add_column("note")
    for row in report.rows():
        name, count, note = row
        table.add_row(name, f"{count:,}", note)
    console.print(table)
    for line in report.summary_lines():
        console.print(line, highlight=False)


# ------------------------------------------------------------------------------------------ make-checkpoint
@app.command("make-checkpoint")
@_friendly
def make_checkpoint(
    out_dir: Annotated[Path, typer.Argument(help="Folder to create.")],
    preset: Annotated[str, typer.Option(help="tiny (tests), small (benchmarks) or full (real N1.6 sizes, ~6.6 GB).")] = "tiny",
    seed: Annotated[int, typer.Option(help="Random seed of the weights and statistics.")] = 0,
) -> None:
    """Write a synthetic checkpoint in the real N1.6 file layout, with random weights."""
    from .model.synthetic import make_checkpoint as make

    with console.status(f"writing {preset} checkpoint to {out_dir}"):
        path = make(out_dir, preset, seed=seed)
    console.print(f"wrote {preset} synthetic checkpoint: {path}")


# ------------------------------------------------------------------------------------------ export
def _parse_sizes(values: list[str] | None) -> tuple[tuple[int, int], ...]:
    from .errors import ExportError
    from .graphs import parse_image_size

    sizes = []
    for value in values or []:
        try:
            sizes.append(parse_image_size(value))
        except ValueError as exc:
            raise ExportError(str(exc)) from None
    return tuple(sizes)


@app.command()
@_friendly
def export(
    checkpoint: Annotated[str, typer.Option("--checkpoint", "-c", help="Checkpoint folder or Hugging Face id.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Export directory to create.")] = Path("build"),
    embodiment: Annotated[
        list[str] | None,
        typer.Option(help="Embodiment tag to export (repeatable; default: all). Exactly one slices the "
                     "embodiment-specific weights to it (1/32 of their size)."),
    ] = None,
    image_size: Annotated[
        list[str] | None,
        typer.Option(help="Preprocessed image size HxW to export a vision graph for (repeatable; default "
                     "252x336 for 4:3 cameras and 252x252 for square ones). Frames are resized to multiples "
                     "of 28 first: a 720x1280 camera needs 252x448."),
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Denoising steps (default: the checkpoint's, 4).")] = None,
    precision: Annotated[str, typer.Option(
        help="fp32 (reference), fp16 or bf16 for every graph, or fp8: vision and small graphs fp16, backbone, "
             "dit_context and dit fp8 (architecture §5).")] = "fp32",
    graph_precision: Annotated[str, typer.Option(
        help="Per-graph overrides, e.g. vision=fp16,backbone=bf16,dit=fp8.")] = "",
    device: Annotated[str | None, typer.Option(
        help="Use the precision defaults of a device class: thor, rtx, hopper or orin (no fp8).")] = None,
    calib: Annotated[str | None, typer.Option(
        help="Folder of recorded observations (.npz, the --obs format; `run --record`) to calibrate fp8 "
             "graphs on. Default: synthetic observations (said in the manifest).")] = None,
    calib_count: Annotated[int, typer.Option(
        help="Synthetic calibration observations per embodiment when --calib is not given.")] = 4,
    max_batch: Annotated[int, typer.Option(help="Largest batch the engines will be built for.")] = 1,
    tokenizer: Annotated[str | None, typer.Option(help="Tokenizer folder or HF id (default: from the checkpoint).")] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing export directory.")] = False,
) -> None:
    """Export a checkpoint as ONNX graphs + manifest into an export directory."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from .export.driver import ExportOptions, export_checkpoint

    options = ExportOptions(
        embodiments=tuple(embodiment or ()),
        image_sizes=_parse_sizes(image_size),
        steps=steps,
        precision=precision,
        graph_precision=graph_precision,
        device=device,
        calib=calib,
        calib_count=calib_count,
        max_batch=max_batch,
        tokenizer=tokenizer,
        force=force,
    )
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("loading checkpoint", total=None)

        def progress(name: str, status: str) -> None:
            bar.update(task, description=f"{name}: {status}")
            if status.startswith("done"):
                bar.console.print(f"  [green]✓[/] {name} ({status})")
            elif name == "calibration" and "SYNTHETIC" in status:
                bar.console.print(f"  [yellow]![/] {status}")
            elif name == "calibration" and status.startswith("recorded"):
                bar.console.print(f"  [green]✓[/] {status}")

        manifest = export_checkpoint(checkpoint, out, options, progress)
        bar.update(task, total=1, completed=1, description="export complete")
    console.print(
        f"exported {len(manifest.graphs)} graphs ({options.precision}) for embodiments "
        f"{', '.join(manifest.embodiments)} and image sizes "
        f"{', '.join(f'{h}x{w}' for h, w in manifest.image_sizes)} to {out}"
    )
    from .export.precision import graph_sizes

    for size in graph_sizes(out, manifest):
        console.print(f"  {size.name:<16} {size.precision:<5} {size.on_disk / 1e6:10.1f} MB on disk   "
                      f"≈ {size.engine_weights / 1e6:10.1f} MB engine weights")
    calibration = manifest.precision.get("calibration")
    if calibration:
        console.print(f"fp8 calibration: {calibration['source']}, {calibration['observations']} observations "
                      f"(fingerprint {calibration['fingerprint'][:12]}…)")
    console.print("add another camera resolution with --image-size HxW (multiples of 28).")


# ------------------------------------------------------------------------------------------ run
@app.command()
@_friendly
def run(
    export_dir: Annotated[Path, typer.Argument(help="Export directory (from `gr00t-trt export`).")],
    obs: Annotated[Path | None, typer.Option(help="Observation .npz (flat Isaac-GR00T keys: video.<k>, state.<k>, annotation.*).")] = None,
    synthetic: Annotated[bool, typer.Option(help="Use a random observation for the embodiment.")] = False,
    embodiment: Annotated[str | None, typer.Option(help="Embodiment tag (default: the only exported one).")] = None,
    backend: Annotated[str, typer.Option(help="auto, ort or trt.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the initial noise (and of --synthetic).")] = 0,
    out: Annotated[Path | None, typer.Option(help="Write the action chunk to this .npz.")] = None,
    repeat: Annotated[int, typer.Option(help="Control steps to run; timings are the last one's (the first "
                                        "includes warm-up).")] = 1,
) -> None:
    """Run a control step and print the action chunk and per-stage timings."""
    import numpy as np

    from .errors import ObservationError
    from .observations import load_observation, synthetic_observation
    from .runtime.policy import Policy

    if (obs is None) == (not synthetic):
        raise ObservationError("give exactly one of --obs FILE.npz or --synthetic")
    policy = Policy.load(export_dir, backend=backend)
    tag = policy.resolve_embodiment(embodiment)
    if obs:
        observation = load_observation(obs)
    else:
        spec = policy.preprocessor.spec
        observation = synthetic_observation(spec, tag, seed=seed, image_sizes=policy.manifest.image_sizes)
    for _ in range(max(repeat, 1)):
        actions = policy.get_action(observation, embodiment=tag, seed=seed)
    _render_actions(actions)
    _render_timings(policy.last_timings, f"timings of step {max(repeat, 1)} ({policy.pipeline.backend.name}, ms)")
    if out:
        np.savez(out, **actions)
        console.print(f"wrote {out}")


def _render_actions(actions: dict) -> None:
    table = Table(title="action chunk")
    for col in ("key", "shape", "min", "mean", "max", "first step"):
        table.add_column(col, justify="right" if col not in ("key", "first step") else "left")
    for key, value in actions.items():
        first = ", ".join(f"{v:.3f}" for v in value[0, 0, :6]) + (" …" if value.shape[-1] > 6 else "")
        table.add_row(key, "×".join(map(str, value.shape)), f"{value.min():.3f}", f"{value.mean():.3f}",
                      f"{value.max():.3f}", first)
    console.print(table)


def _render_timings(timings: dict, title: str) -> None:
    table = Table(title=title)
    table.add_column("stage")
    table.add_column("ms", justify="right")
    for stage, ms in timings.items():
        table.add_row(stage, f"{ms:.2f}")
    console.print(table)


# ------------------------------------------------------------------------------------------ verify
@app.command()
@_friendly
def verify(
    export_dir: Annotated[Path, typer.Argument(help="Export directory to verify.")],
    checkpoint: Annotated[str, typer.Option("--checkpoint", "-c", help="The checkpoint it was exported from.")],
    backend: Annotated[str, typer.Option(help="auto, ort or trt.")] = "auto",
    obs: Annotated[Path | None, typer.Option(help="Observation .npz (default: random observations).")] = None,
    embodiment: Annotated[list[str] | None, typer.Option(help="Embodiment(s) to check (default: all exported).")] = None,
    seeds: Annotated[int, typer.Option(help="Number of noise seeds (and random observations).")] = 1,
    json_out: Annotated[Path, typer.Option("--json", help="Where to write the JSON report.")] = Path("verify-report.json"),
) -> None:
    """Prove the export matches the unoptimised PyTorch reference (architecture §7 thresholds)."""
    from .verify import verify_export

    with console.status("running the PyTorch reference and the backend"):
        report = verify_export(
            export_dir, checkpoint, backend=backend, obs_path=obs, embodiments=tuple(embodiment or ()), seeds=seeds
        )
    _render_parity(report)
    json_out.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    console.print(f"report written to {json_out}")
    if not report.passed:
        err_console.print(f"[bold red]FAILED[/]: {len(report.failures)} check(s) outside their thresholds")
        raise typer.Exit(2)
    console.print("[bold green]PASSED[/]: every stage within its threshold")


def _render_parity(report) -> None:
    table = Table(title="parity vs the PyTorch reference")
    for col in ("case", "stage", "cosine", "mean abs", "max abs", "rel L2", "threshold", ""):
        table.add_column(col, justify="left" if col in ("case", "stage", "threshold") else "right")
    for c in report.comparisons:
        case, _, stage = c.stage.partition(" ")
        table.add_row(
            case, stage, f"{c.cosine:.6f}", f"{c.mean_abs:.1e}", f"{c.max_abs:.1e}", f"{c.rel_l2:.1e}",
            c.threshold.describe(), "[green]ok[/]" if c.passed else "[red]FAIL[/]",
        )
    console.print(table)


# ------------------------------------------------------------------------------------------ demo
@app.command()
@_friendly
def demo(
    workdir: Annotated[Path, typer.Option(help="Where to put the synthetic checkpoint and the export.")] = Path("gr00t-demo"),
) -> None:
    """The whole flow on a tiny synthetic checkpoint: make → export → run on ONNX Runtime → verify."""
    from .demo import run_demo

    if not run_demo(workdir, console):
        raise typer.Exit(2)


def main() -> None:  # pragma: no cover
    app(prog_name="gr00t-trt")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
