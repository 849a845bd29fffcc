"""``gr00t-trt selftest``: on a new device, run this first (logic in ``gr00t_trt.workflows.selftest``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import app, console, friendly


@app.command()
@friendly
def selftest(
    out: Annotated[Path, typer.Option(help="Folder for the checkpoints, exports, engines and the report.")] = Path(
        "gr00t-trt-selftest"),
    preset: Annotated[list[str] | None, typer.Option(help="Preset to test (repeatable; default: tiny and small).")] = None,
    precision: Annotated[list[str] | None, typer.Option(
        help="Precision to test (repeatable; default: every one this GPU supports).")] = None,
    device_id: Annotated[int, typer.Option(help="CUDA device to test.")] = 0,
) -> None:
    """On a new device, run this first: export, build, parity, CUDA graphs, allocations, engine cache and
    bench on the tiny and small presets at every precision the GPU has; writes selftest.json and .md."""
    from ..workflows.selftest import PRESETS, run_selftest

    report = run_selftest(out, presets=tuple(preset or PRESETS), precisions=tuple(precision or ()),
                          device_id=device_id, say=lambda text: console.print(text, highlight=False, markup=False))
    if not report.passed:
        raise typer.Exit(1)
