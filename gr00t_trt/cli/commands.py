"""The commands of the export → run → verify flow: inspect, make-checkpoint, export, run, verify, demo.

Thin: each validates its arguments before doing any work, calls the library, and renders the result
(``render.py``). Library errors become one red line (``app.friendly``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..base.errors import Gr00tTrtError
from ..bench.devices import DEVICES
from ..families.registry import DEFAULT_FAMILY, FAMILIES
from .app import app, console, err_console, flag, friendly
from .render import (
    render_actions,
    render_graph_sizes,
    render_graphs,
    render_inspect,
    render_parity,
    render_timings,
)

#: the default export folder: a name nothing else writes (setuptools owns build/)
DEFAULT_EXPORT = "gr00t-export"
#: the --device vocabulary of export and bench (the roofline's device table)
DEVICE_NAMES = ", ".join(DEVICES)
BACKEND_HELP = "auto, ort or trt (auto: TensorRT if engines match this GPU, else ONNX Runtime)."
THREADS_HELP = "ONNX Runtime intra-op threads per graph session (default: all cores); with --shared-threads the size of the one pool."
SHARED_THREADS_HELP = "Run every ONNX Runtime session on one process-wide thread pool (Policy.load(shared_threads=True))."


def thread_options(threads: int | None, shared_threads: bool) -> dict:
    """The thread options of ``Policy.load`` given on the command line (none: the backend's defaults)."""
    options: dict = {}
    if threads is not None:
        if threads < 1:
            from ..base.errors import BackendError

            raise BackendError(f"--threads must be at least 1, got {threads}")
        options["threads"] = threads
    if shared_threads:
        options["shared_threads"] = True
    return options


def _writable_file(path: Path | None, option: str) -> None:
    """Refuse, before any work is done, an output path that could not be written (files.check_output)."""
    if path is not None:
        from ..base.files import check_output

        check_output(path, option)


# ------------------------------------------------------------------------------------------ inspect
#: --model of the commands that make a model (the others read the family from config.json / the manifest)
MODEL_HELP = "Model family: " + ", ".join(f"{f.name} ({f.title})" for f in FAMILIES) + "."
DEFAULT_MODEL = DEFAULT_FAMILY.name  # what make-checkpoint and demo make without --model

@app.command()
@friendly
def inspect(
    checkpoint: Annotated[str, typer.Argument(
        help="Checkpoint folder or Hugging Face id (e.g. nvidia/GR00T-N1.6-3B), or an export directory.")],
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON here.")] = None,
) -> None:
    """Check a checkpoint's layout and count its parameters, reading only file headers (no weights).

    Given an export directory instead, show each graph's precision, size on disk and the weight bytes
    a TensorRT engine built from it will hold."""
    from ..base.files import write_json
    from ..contract.manifest import is_export

    _writable_file(json_out, "--json")
    if Path(checkpoint).is_dir() and is_export(Path(checkpoint)):
        report = _inspect_export(Path(checkpoint))  # no torch, no onnx: it runs on the robot install
    else:
        from ..model.inspect import inspect_checkpoint

        report = inspect_checkpoint(checkpoint)
        render_inspect(console, report)
        report = report.to_dict()
    if json_out:
        write_json(json_out, report)


def _inspect_export(folder: Path) -> dict:
    """Render an export's per-graph sizes at their recorded precisions; returns them for --json."""
    import dataclasses

    from ..contract.export_sizes import graph_sizes
    from ..contract.manifest import load_manifest

    manifest = load_manifest(folder, verify_files=False)
    sizes = graph_sizes(folder, manifest)
    console.print(f"export {folder}: {len(manifest.graphs)} graphs from {manifest.source.get('checkpoint', '?')}, "
                  f"embodiments {', '.join(manifest.embodiments)}")
    render_graph_sizes(console, sizes)
    return {"export": str(folder), "precision": manifest.precision,
            "graphs": [dataclasses.asdict(s) for s in sizes],
            "engine_weights_total": sum(s.engine_weights for s in sizes), "serves": _inspect_serving(manifest)}


def _inspect_serving(manifest) -> dict:
    """Print which image sizes and batches the export serves; returns them for --json."""
    from ..contract.served import serving, serving_lines

    for line in serving_lines(manifest):
        console.print(line, soft_wrap=True)
    return serving(manifest)


# ------------------------------------------------------------------------------------------ make-checkpoint
@app.command("make-checkpoint")
@friendly
def make_checkpoint(
    out_dir: Annotated[Path, typer.Argument(help="Folder to create.")],
    preset: Annotated[str, typer.Option(help="tiny (tests), small (benchmarks) or full (real N1.6 sizes, ~9.4 GB: bf16 backbone, fp32 action head).")] = "tiny",
    seed: Annotated[int, typer.Option(min=0, help="Random seed of the weights and statistics.")] = 0,
    force: Annotated[bool, flag("--force", "Replace an existing synthetic checkpoint (or empty folder).")] = False,
    model: Annotated[str, typer.Option(help=MODEL_HELP)] = DEFAULT_MODEL,
) -> None:
    """Write a synthetic checkpoint in the real file layout of N1.6 or N1.7 (--model), with random weights."""
    from ..families.registry import family_named

    family = family_named(model)
    with console.status(f"writing {preset} {family.title} checkpoint to {out_dir}"):
        path = family.export().make_checkpoint(out_dir, preset, seed=seed, overwrite=force)
    console.print(f"wrote {preset} synthetic {family.title} checkpoint: {path}")


# ------------------------------------------------------------------------------------------ export
def _parse_sizes(values: list[str] | None) -> tuple[tuple[int, int], ...]:
    from ..base.errors import ExportError
    from ..contract.graphs import parse_image_size

    sizes = []
    for value in values or []:
        try:
            sizes.append(parse_image_size(value))
        except ValueError as exc:
            raise ExportError(str(exc)) from None
    return tuple(sizes)


@app.command()
@friendly
def export(
    checkpoint: Annotated[str, typer.Option("--checkpoint", "-c", help="Checkpoint folder or Hugging Face id.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Export directory to create.")] = Path(DEFAULT_EXPORT),
    embodiment: Annotated[
        list[str] | None,
        typer.Option(help="Embodiment tag to export (repeatable; default: all). Exactly one slices the "
                     "embodiment-specific weights to it (1/32 of their size)."),
    ] = None,
    image_size: Annotated[
        list[str] | None,
        typer.Option(help="Preprocessed image size HxW the export must also serve (repeatable; the first "
                     "is the engines' optimisation size). One vision graph serves every size between the "
                     "ones named; by default 4:3, 1:1, 16:9, 21:9 cameras and their portrait twins "
                     "(252x252 up to 252x588 and 588x252 at 28 pixels per token). Frames are first resized to "
                     "multiples of the model's pixels per token side: a 32:9 3840x1080 camera needs 252x896."),
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Denoising steps (default: the checkpoint's, 4).")] = None,
    precision: Annotated[str, typer.Option(
        help="fp32 (reference), fp16 or bf16 for every graph, or fp8 / int8 (W8A8): vision and small graphs "
             "fp16, backbone, dit_context and dit fp8 / int8.")] = "fp32",
    graph_precision: Annotated[str, typer.Option(
        help="Per-graph overrides, e.g. vision=fp16,backbone=bf16,dit=fp8 or dit=int8.")] = "",
    device: Annotated[str | None, typer.Option(
        help=f"Use the precision defaults of a device: {DEVICE_NAMES} (orin: int8 backbone and DiT, fp16 elsewhere, never fp8).")] = None,
    calib: Annotated[str | None, typer.Option(
        help="Folder of recorded observations (.npz, the --obs format; `run --record`) to calibrate fp8 "
             "and int8 graphs on. Default: synthetic observations (said in the manifest).")] = None,
    calib_count: Annotated[int, typer.Option(
        help="Synthetic calibration observations per embodiment when --calib is not given.")] = 4,
    max_batch: Annotated[int, typer.Option(help="Largest batch the engines will be built for.")] = 4,
    tokenizer: Annotated[str | None, typer.Option(help="Tokenizer folder or HF id (default: from the checkpoint).")] = None,
    force: Annotated[bool, flag("--force", "Replace an existing export directory (never another folder).")] = False,
) -> None:
    """Export a checkpoint as ONNX graphs + manifest into an export directory."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from ..export.driver import ExportOptions, check_options, export_checkpoint

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
    if out.resolve() == Path.cwd().resolve() or out.resolve() == Path.home().resolve():
        raise Gr00tTrtError(f"--out {out} is the current or home folder — export into a new folder, e.g. --out {DEFAULT_EXPORT}/")
    check_options(options, out)  # bad options fail before the progress bar appears
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("checkpoint: loading", total=None)

        def progress(name: str, status: str) -> None:
            bar.update(task, description=f"{name}: {status}")
            if status.startswith("done"):
                bar.console.print(f"  [green]✓[/] {name} ({status})")
            elif name == "calibration" and "SYNTHETIC" in status:
                bar.console.print(f"  [yellow]![/] {status}")
            elif name == "calibration" and status.startswith("recorded"):
                bar.console.print(f"  [green]✓[/] {status}")

        manifest = export_checkpoint(checkpoint, out, options, progress)
        bar.update(task, total=1, completed=1, description="export: complete")
    from ..bench.report import precision_summary

    precisions = {name: entry.precision for name, entry in manifest.graphs.items()}
    console.print(
        f"exported {len(manifest.graphs)} graphs ({precision_summary(precisions)}) for embodiments "
        f"{', '.join(manifest.embodiments)} and image sizes "
        f"{', '.join(f'{h}x{w}' for h, w in manifest.image_sizes)} to {out}"
    )
    from ..contract.export_sizes import graph_sizes

    render_graph_sizes(console, graph_sizes(out, manifest))
    calibration = manifest.precision.get("calibration")
    if calibration:
        console.print(f"calibration: {calibration['source']}, {calibration['observations']} observations "
                      f"(fingerprint {calibration['fingerprint'][:12]}…)")
    console.print(f"add another camera resolution with --image-size HxW (multiples of {manifest.dims['R']}).")


# ------------------------------------------------------------------------------------------ run
@app.command()
@friendly
def run(
    export_dir: Annotated[Path, typer.Argument(help="Export directory (from `gr00t-trt export`).")],
    obs: Annotated[Path | None, typer.Option(help="Observation .npz (flat Isaac-GR00T keys: video.<k>, state.<k>, annotation.*).")] = None,
    synthetic: Annotated[bool, flag("--synthetic", "Use a random observation for the embodiment.")] = False,
    embodiment: Annotated[str | None, typer.Option(help="Embodiment tag (default: the only exported one).")] = None,
    backend: Annotated[str, typer.Option(help=BACKEND_HELP)] = "auto",
    seed: Annotated[int, typer.Option(min=0, help="Seed of the initial noise (and of --synthetic).")] = 0,
    out: Annotated[Path | None, typer.Option(help="Write the action chunk to this .npz.")] = None,
    save_obs: Annotated[Path | None, typer.Option(help="Also write the observation used to this .npz (the --obs "
                                                  "format): a starting point for your own.")] = None,
    repeat: Annotated[int, typer.Option(min=1, help="Control steps to run; timings are the last one's (the first "
                                        "call's include one-time warm-up, and say so).")] = 1,
    record: Annotated[Path | None, typer.Option(help="Also save the observation into this folder "
                                                "(DIR/<embodiment>/*.npz) to calibrate fp8 exports on (export --calib DIR).")] = None,
    threads: Annotated[int | None, typer.Option(help=THREADS_HELP)] = None,
    shared_threads: Annotated[bool, flag("--shared-threads", SHARED_THREADS_HELP)] = False,
) -> None:
    """Run control steps on an export and print the action chunk and per-stage timings."""
    import io

    import numpy as np

    from ..base.errors import ObservationError
    from ..base.files import write_atomic
    from ..processing.observations import (
        load_observation,
        record_observation,
        save_observation,
        synthetic_observation,
    )
    from ..runtime.policy import Policy

    if (obs is None) == (not synthetic):
        raise ObservationError("give exactly one of --obs FILE.npz or --synthetic")
    _writable_file(out, "--out")
    _writable_file(save_obs, "--save-obs")
    if record is not None:
        from ..base.files import check_output_folder

        check_output_folder(record, "--record")
    policy = Policy.load(export_dir, backend=backend, **thread_options(threads, shared_threads))
    tag = policy.resolve_embodiment(embodiment)
    if obs:
        observation = load_observation(obs)
    else:
        observation = synthetic_observation(policy.preprocessor, tag, seed=seed, image_sizes=policy.manifest.image_sizes)
    for _ in range(repeat):
        actions = policy.predict(observation, embodiment=tag, seed=seed)
    render_actions(console, actions)
    which = f"step {repeat}" if repeat > 1 else "the first call, warm-up included (--repeat 3: steady state)"
    render_timings(console, policy.last_timings, f"timings of {which} ({policy.pipeline.backend.name}, ms)")
    if save_obs:
        save_observation(save_obs, observation)
        console.print(f"wrote the observation to {save_obs}")
    if record:
        console.print(f"recorded the observation as {record_observation(record, observation, tag)}")
    if out:
        buffer = io.BytesIO()
        np.savez(buffer, **actions)
        write_atomic(out, buffer.getvalue())
        console.print(f"wrote {out}")


# ------------------------------------------------------------------------------------------ verify
@app.command()
@friendly
def verify(
    export_dir: Annotated[Path, typer.Argument(help="Export directory to verify.")],
    checkpoint: Annotated[str, typer.Option("--checkpoint", "-c", help="The checkpoint it was exported from.")],
    backend: Annotated[str, typer.Option(help=BACKEND_HELP)] = "auto",
    obs: Annotated[Path | None, typer.Option(help="Observation .npz (default: random observations).")] = None,
    embodiment: Annotated[list[str] | None, typer.Option(help="Embodiment(s) to check (default: all exported).")] = None,
    seeds: Annotated[int, typer.Option(min=1, help="Number of noise seeds (and random observations).")] = 1,
    json_out: Annotated[Path, typer.Option("--json", help="Where to write the JSON report (always written, "
                                           "also when verification fails or is refused).")] = Path("verify-report.json"),
    any_checkpoint: Annotated[bool, flag("--any-checkpoint", "Compare with a checkpoint other than the one the export was "
                                                 "made from (same config), e.g. to see how far a fine-tune moved.")] = False,
) -> None:
    """Prove the export matches the unoptimised PyTorch reference.

    Compares each graph alone, the action head on the reference's backbone output, every denoising step in
    lock-step, and the end-to-end actions. Thresholds: fp32 exports must agree to float rounding (relative
    L2 error ≤ 1e-4); fp16/bf16 ones need cosine similarity ≥ 0.999 and mean abs error ≤ 0.01 on backbone
    features, ≥ 0.99 and ≤ 0.05 on actions; fp8 and int8 ones ≥ 0.99 and ≤ 0.05 on backbone features, ≥ 0.98
    and ≤ 0.1 on actions. Features read before the LLM's final norm (N1.7) are compared standardised per
    token, as the action head's VLLN sees them. Exit status 2 when a check fails.
    """
    from ..base.files import write_json
    from ..verification.verify import verify_export

    _writable_file(json_out, "--json")
    try:
        with console.status("running the PyTorch reference and the backend"):
            report = verify_export(
                export_dir, checkpoint, backend=backend, obs_path=obs, embodiments=tuple(embodiment or ()), seeds=seeds,
                same_checkpoint=not any_checkpoint,
            )
    except Gr00tTrtError as exc:
        write_json(json_out, {"passed": False, "refused": str(exc),
                              "context": {"export_dir": str(export_dir), "checkpoint": str(checkpoint)}, "comparisons": []})
        raise
    write_json(json_out, report.to_dict())  # before rendering: the report survives whatever follows
    render_parity(console, report)
    console.print(f"report written to {json_out}")
    if not report.passed:
        err_console.print(f"[bold red]FAILED[/]: {len(report.failures)} check(s) outside their thresholds")
        raise typer.Exit(2)
    console.print("[bold green]PASSED[/]: every stage within its threshold")


# ------------------------------------------------------------------------------------------ demo
@app.command()
@friendly
def demo(
    workdir: Annotated[Path, typer.Option(help="Where to put the synthetic checkpoint and the export.")] = Path("gr00t-demo"),
    model: Annotated[str, typer.Option(help=MODEL_HELP)] = DEFAULT_MODEL,
) -> None:
    """The whole flow on a tiny synthetic checkpoint: make → export → run on ONNX Runtime → verify."""
    from ..workflows.demo import DEMO_STEPS, run_demo

    def on_step(index: int) -> None:
        console.rule(f"{index + 1}/{len(DEMO_STEPS)}  {DEMO_STEPS[index]}")

    with console.status("working") as status:
        report = run_demo(workdir, model=model, on_step=on_step,
                          progress=lambda name, s: status.update(f"{name}: {s}"))
    console.rule("results")
    render_graphs(console, report.manifest)
    render_actions(console, report.actions)
    render_timings(console, report.timings, "timings, steady state (ms)")
    render_parity(console, report.parity)
    verdict = "[bold green]PASSED[/]" if report.passed else "[bold red]FAILED[/]"
    console.print(f"{verdict} — demo finished in {report.seconds:.1f}s; files in {workdir}")
    if not report.passed:
        raise typer.Exit(2)
