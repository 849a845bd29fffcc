"""``gr00t-trt bench``: check every option before any work, then either the roofline alone
(``--model-only``) or a benchmark (plus the reference when asked), rendered and written. The measuring,
statistics, roofline and report writers live in ``gr00t_trt.bench``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from ..base.errors import Gr00tTrtError, ManifestError, ObservationError, require
from ..bench.devices import DEVICES, find_device, require_device
from ..runtime.registry import backend_names
from .app import app, console, flag, friendly
from .commands import BACKEND_HELP, DEVICE_NAMES, SHARED_THREADS_HELP, THREADS_HELP, thread_options


@dataclass(frozen=True)
class BenchOptions:
    """Every ``bench`` option, as given on the command line."""

    export_dir: Path | None = None
    backend: str = "auto"
    iters: int = 50
    warmup: int = 5
    obs: Path | None = None
    synthetic: bool = False
    cameras: int | None = None
    batch: int = 1
    embodiment: str | None = None
    seed: int = 0
    compare_reference: str | None = None
    reference_mode: str = "auto"
    reference_iters: int = 10
    allow_noisy: bool = False
    json_out: Path | None = None
    markdown_out: Path | None = None
    plot_out: Path | None = None
    model_only: bool = False
    checkpoint: str | None = None
    precision: str | None = None
    device: str | None = None
    threads: int | None = None
    shared_threads: bool = False

    def check(self) -> None:
        """One-line errors for bad options, before anything is loaded or run."""
        if self.backend not in backend_names():
            raise Gr00tTrtError(f"unknown backend {self.backend!r} — expected one of: {', '.join(backend_names())}")
        if self.iters < 1:
            raise Gr00tTrtError(f"--iters must be at least 1, got {self.iters}")
        if self.warmup < 0:
            raise Gr00tTrtError(f"--warmup must be 0 or more, got {self.warmup}")
        if self.batch < 1:
            raise Gr00tTrtError(f"--batch must be at least 1, got {self.batch}")
        if self.threads is not None and self.threads < 1:
            raise Gr00tTrtError(f"--threads must be at least 1, got {self.threads}")
        if self.cameras is not None and self.cameras < 1:
            raise Gr00tTrtError(f"--cameras must be at least 1, got {self.cameras}")
        if self.reference_iters < 1:
            raise Gr00tTrtError(f"--reference-iters must be at least 1, got {self.reference_iters}")
        if self.precision is not None:
            from ..bench.model_only import precisions_for

            precisions_for(self.precision)  # raises the one-line error for an unknown precision
        if self.device is not None:
            require_device(self.device)
        if self.model_only:
            if (self.export_dir is None) == (self.checkpoint is None):
                raise Gr00tTrtError("--model-only needs exactly one of an export DIR or --checkpoint CKPT")
        elif self.checkpoint is not None:
            raise Gr00tTrtError("--checkpoint is for --model-only; to time the reference use --compare-reference CKPT")
        elif self.export_dir is None:
            raise Gr00tTrtError("bench needs an export directory — gr00t-trt bench DIR (or --model-only --checkpoint CKPT)")
        if self.export_dir is not None and not self.export_dir.is_dir():
            raise ManifestError(f"export directory not found: {self.export_dir} — run `gr00t-trt export` first")
        if self.obs is not None and self.synthetic:
            raise ObservationError("give one of --obs FILE.npz or --synthetic, not both")
        if self.obs is not None and not self.obs.is_file():
            raise ObservationError(f"observation file not found: {self.obs}")
        if self.obs is not None and (self.batch != 1 or self.cameras is not None):
            raise ObservationError("--batch and --cameras shape a --synthetic observation; an --obs file has its own")
        if self.plot_out is not None:
            if self.plot_out.suffix.lower() != ".png":
                raise Gr00tTrtError(f"--plot writes a PNG — expected a FILE.png, got {self.plot_out}")
            require("matplotlib", "gr00t-trt[plot]", "the --plot chart")
        if self.model_only and (self.compare_reference or self.plot_out):
            raise Gr00tTrtError("--model-only executes nothing: --compare-reference and --plot need a benchmark run")
        from ..base.files import check_output

        for option, path in (("--json", self.json_out), ("--markdown", self.markdown_out), ("--plot", self.plot_out)):
            if path is not None:
                check_output(path, option)


def run_bench(options: BenchOptions, console: Any, progress_factory: Any = None) -> Any:
    """Run what the options ask for; returns the BenchReport or the Roofline (``--model-only``)."""
    options.check()
    if options.model_only:
        return _model_only(options, console)
    from ..bench import reference as ref
    from ..bench.report import render_console, to_markdown, write_json, write_png
    from ..bench.runner import add_reference_contention, run_benchmark
    from ..runtime.policy import Policy

    # per-stage detail down to each denoising step; on TensorRT that splits the captured action head into
    # N + 1 CUDA graphs, so the end-to-end figure there is slightly pessimistic (said in the header)
    policy = Policy.load(options.export_dir, backend=options.backend, detailed_timings=True,
                         **thread_options(options.threads, options.shared_threads))
    threads = getattr(policy.pipeline.backend, "threads", None)
    try:
        tag = policy.resolve_embodiment(options.embodiment)
        observation = _observation(options, policy, tag)
        mode = ref.choose_mode(options.reference_mode, options.compare_reference) if options.compare_reference else None
        with _progress(progress_factory) as progress:
            report = run_benchmark(policy, observation, iters=options.iters, warmup=options.warmup, embodiment=tag,
                                   seed=options.seed, progress=progress, device=options.device)
            if mode == "interleaved":
                report.reference = ref.compare_interleaved(
                    policy, options.compare_reference, observation, embodiment=tag, iters=options.reference_iters,
                    seed=options.seed, progress=progress)
            elif mode == "process":
                report.reference = ref.compare_separate_process(
                    report, policy, options.compare_reference, observation, embodiment=tag,
                    iters=options.reference_iters, seed=options.seed)
            if report.reference is not None:
                add_reference_contention(report, threads)
    finally:
        policy.close()
    report.allow_noisy = options.allow_noisy
    render_console(report, console)
    if options.json_out:
        write_json(options.json_out, report.to_dict())
    if options.markdown_out:
        from ..bench.report import write_atomic

        write_atomic(options.markdown_out, to_markdown(report))
    if options.plot_out:
        write_png(report, options.plot_out)
    for path in (options.json_out, options.markdown_out, options.plot_out):
        if path:
            console.print(f"wrote {path}", highlight=False)
    return report


def _model_only(options: BenchOptions, console: Any) -> Any:
    from ..bench.model_only import roofline_from_checkpoint, roofline_from_export
    from ..bench.report import render_roofline_console, roofline_markdown, write_atomic, write_json

    if options.checkpoint is not None:
        roof = roofline_from_checkpoint(options.checkpoint, precision=options.precision,
                                        cameras=options.cameras or 1, batch=options.batch, device=options.device)
    else:
        roof = roofline_from_export(options.export_dir, precision=options.precision, cameras=options.cameras,
                                    batch=options.batch)
    devices = [find_device(options.device)] if options.device else list(DEVICES.values())
    render_roofline_console(roof, devices, console)
    if options.json_out:
        write_json(options.json_out, {"schema": "gr00t-trt-roofline/1", **roof.to_dict(devices)})
    if options.markdown_out:
        write_atomic(options.markdown_out, roofline_markdown(roof, devices) + "\n")
    return roof


def _observation(options: BenchOptions, policy: Any, tag: str) -> dict:
    from ..processing.observations import load_observation, synthetic_observation

    if options.obs is not None:
        return load_observation(options.obs)
    spec = policy.preprocessor.spec
    cameras = len(spec.embodiment(tag).video_keys)
    if options.cameras is not None and options.cameras != cameras:
        raise ObservationError(
            f"--cameras {options.cameras}: embodiment {tag!r} has {cameras} camera(s) in its modality config — "
            "the camera count comes from the embodiment; choose another --embodiment"
        )
    return synthetic_observation(policy.preprocessor, tag, seed=options.seed, batch=options.batch, image_sizes=policy.manifest.image_sizes)


class _progress:
    """A rich progress bar (or nothing) as a runner progress callback."""

    def __init__(self, factory: Any) -> None:
        self.factory, self.bar, self.tasks = factory, None, {}

    def __enter__(self):
        if self.factory is None:
            return None
        self.bar = self.factory()
        self.bar.__enter__()
        return self.update

    def update(self, phase: str, done: int, total: int) -> None:
        if phase not in self.tasks:
            self.tasks[phase] = self.bar.add_task(phase, total=total)
        self.bar.update(self.tasks[phase], completed=done)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


# ------------------------------------------------------------------------------------------ bench
@app.command()
@friendly
def bench(
    export_dir: Annotated[Path | None, typer.Argument(help="Export directory to benchmark (from `gr00t-trt export`).")] = None,
    backend: Annotated[str, typer.Option(help=BACKEND_HELP)] = "auto",
    iters: Annotated[int, typer.Option(help="Measured control steps (after warm-up).")] = 50,
    warmup: Annotated[int, typer.Option(help="Control steps run first and excluded (after the first call).")] = 5,
    obs: Annotated[Path | None, typer.Option(help="Observation .npz (flat Isaac-GR00T keys).")] = None,
    synthetic: Annotated[bool, flag("--synthetic", "Use a random observation (the default without --obs).")] = False,
    cameras: Annotated[int | None, typer.Option(help="Cameras (must match the embodiment; --model-only: any).")] = None,
    batch: Annotated[int, typer.Option(help="Batch size of the synthetic observation.")] = 1,
    embodiment: Annotated[str | None, typer.Option(help="Embodiment tag (default: the only exported one).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the observation and of the initial noise.")] = 0,
    compare_reference: Annotated[str | None, typer.Option(help="Also time the PyTorch reference of this checkpoint.")] = None,
    reference_mode: Annotated[str, typer.Option(help="auto (interleaved when the reference fits in memory), "
                                                "interleaved (alternating calls, one process) or process (its own, after ours).")] = "auto",
    reference_iters: Annotated[int, typer.Option(help="Measured reference control steps.")] = 10,
    allow_noisy: Annotated[bool, flag("--allow-noisy", "Print speed-ups (marked) even when other processes "
                                      "loaded the CPU during the timing; without it they are withheld.")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report as JSON.")] = None,
    markdown: Annotated[Path | None, typer.Option(help="Write the report as markdown.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG chart of the per-stage breakdown (needs pip install 'gr00t-trt\\[plot]').")] = None,
    model_only: Annotated[bool, flag("--model-only", "Roofline only (no execution): from DIR or --checkpoint.")] = False,
    checkpoint: Annotated[str | None, typer.Option(help="With --model-only: checkpoint folder or Hub id (headers only).")] = None,
    precision: Annotated[str | None, typer.Option(help="With --model-only: fp32, fp16, bf16, fp8 or int8 for every graph (default: the plan of an export for --device, fp8's without one).")] = None,
    device: Annotated[str | None, typer.Option(help=f"Roofline device: {DEVICE_NAMES}.")] = None,
    threads: Annotated[int | None, typer.Option(help=THREADS_HELP)] = None,
    shared_threads: Annotated[bool, flag("--shared-threads", SHARED_THREADS_HELP)] = False,
) -> None:
    """Per-stage latency (p50/p90/p99), first call, memory and the roofline; or --model-only."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    options = BenchOptions(
        export_dir=export_dir, backend=backend, iters=iters, warmup=warmup, obs=obs, synthetic=synthetic,
        cameras=cameras, batch=batch, embodiment=embodiment, seed=seed, compare_reference=compare_reference,
        reference_mode=reference_mode, reference_iters=reference_iters, allow_noisy=allow_noisy, json_out=json_out, markdown_out=markdown,
        plot_out=plot, model_only=model_only, checkpoint=checkpoint, precision=precision, device=device,
        threads=threads, shared_threads=shared_threads,
    )
    bar = lambda: Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),  # noqa: E731
                           TimeElapsedColumn(), console=console, transient=True)
    run_bench(options, console, bar)
