"""The TensorRT commands: ``build`` (engines, or a trtexec script with --dry-run) and ``doctor``.

Thin: the logic lives in ``gr00t_trt.engines`` and ``gr00t_trt.workflows.doctor``; library errors become one red
line (``app.friendly``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from .app import app, console, flag, friendly


@app.command()
@friendly
def build(
    export_dir: Annotated[Path, typer.Argument(help="Export directory (from `gr00t-trt export`).")],
    out: Annotated[Path | None, typer.Option(help="Engine folder (default: EXPORT/engines/sm<cc>-trt<version>).")] = None,
    workspace_gb: Annotated[float, typer.Option(help="TensorRT workspace memory pool, GiB.")] = 4.0,
    opt_level: Annotated[int, typer.Option(help="Builder optimisation level 0-5.")] = 3,
    timing_cache: Annotated[Path | None, typer.Option(help="Timing cache file (default: in the engine folder).")] = None,
    only: Annotated[list[str] | None, typer.Option(help="Build only this graph (repeatable).")] = None,
    force: Annotated[bool, flag("--force", "Rebuild even when a matching plan exists.")] = False,
    dry_run: Annotated[bool, flag("--dry-run", "Write EXPORT/build.sh with the equivalent trtexec commands and print its path (no GPU needed).")] = False,
    adopt: Annotated[bool, flag("--adopt", "Verify plans built elsewhere (build.sh's trtexec) and write their sidecars.")] = False,
) -> None:
    """Build TensorRT engines for this GPU (strongly typed, audited, cached by GPU/TensorRT/precision/ONNX/profile)."""
    from ..engines.build import BuildOptions, build_engines
    from ..engines.build import dry_run as write_dry_run

    options = BuildOptions(out=out, workspace_gb=workspace_gb, opt_level=opt_level, timing_cache=timing_cache,
                           only=tuple(only or ()), force=force, adopt=adopt)
    if dry_run:  # only the path: a terminal would wrap the long trtexec lines mid-token (issue 18)
        path, _text = write_dry_run(export_dir, options)
        console.print(f"wrote {path} — run it on the target device: bash {path}", highlight=False, markup=False,
                      soft_wrap=True)
        return
    start = time.perf_counter()

    def progress(graph: str, status: str) -> None:
        console.print(f"  [{time.perf_counter() - start:6.1f} s] {graph}: {status}", highlight=False, markup=False)

    report = build_engines(export_dir, options, progress)
    if adopt:
        console.print(f"{len(report.engines)} adopted — TensorRT {report.trt_version} on {report.gpu.name} "
                      f"(sm {report.gpu.sm}) in {report.engine_dir}", highlight=False, markup=False, soft_wrap=True)
        return
    built = sum(not e.reused for e in report.engines)
    console.print(f"{built} built, {len(report.engines) - built} reused — TensorRT {report.trt_version} on "
                  f"{report.gpu.name} (sm {report.gpu.sm}) in {report.engine_dir}", highlight=False, markup=False)


@app.command()
@friendly
def doctor(
    export_dir: Annotated[Path | None, typer.Argument(help="Also check this export's engines against this machine.")] = None,
) -> None:
    """What this machine can run: Python, ONNX Runtime, TensorRT, cuda-python, GPU, fp8/fp4, engines."""
    from ..workflows.doctor import run_doctor

    report = run_doctor(export_dir)
    table = Table(title="gr00t-trt doctor")
    table.add_column("check")
    table.add_column("result")
    for row in report.rows:
        table.add_row(row.name, escape(row.value) if row.ok else f"[yellow]{escape(row.value)}[/]")
    console.print(table)
