"""Console rendering of what the library returns: tables that stay readable at 80 columns and piped."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table


def _table(title: str | None = None) -> Table:
    return Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)


def human_bytes(n: float) -> str:
    """1536 → '1.5 KB', 6.6e9 → '6.60 GB' (decimal units, as disks and model cards use)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}" if unit == "GB" else f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def render_inspect(console: Console, report) -> None:
    table = _table(f"Parameters — {report.checkpoint}")
    table.add_column("component", overflow="fold")
    table.add_column("parameters", justify="right", no_wrap=True)
    table.add_column("note", overflow="fold")
    for name, count, note in report.rows():
        table.add_row(name, f"{count:,}", note)
    console.print(table)
    for line in report.summary_lines():
        console.print(line, highlight=False)


def render_actions(console: Console, actions: Mapping[str, np.ndarray]) -> None:
    table = _table("action chunk (physical units)")
    # a key is copied from here into code: whole on one line, the first-step preview gives way instead
    table.add_column("key", no_wrap=True, min_width=max(map(len, actions), default=3))
    table.add_column("shape", no_wrap=True)
    for col in ("min", "mean", "max"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("first step", overflow="ellipsis", no_wrap=True, max_width=30)
    for key, value in actions.items():
        first = ", ".join(f"{v:.3f}" for v in value[0, 0, :4]) + (" …" if value.shape[-1] > 4 else "")
        table.add_row(key, "×".join(map(str, value.shape)), f"{value.min():.3f}", f"{value.mean():.3f}",
                      f"{value.max():.3f}", first)
    console.print(table)


def render_timings(console: Console, timings: Mapping[str, float], title: str) -> None:
    """Per-stage milliseconds; ``pipeline`` and ``total`` are subtotals, marked as such."""
    table = _table(title)
    table.add_column("stage")
    table.add_column("ms", justify="right")
    for stage, ms in timings.items():
        label = f"[dim]{stage} (subtotal)[/]" if stage == "pipeline" else stage
        if stage == "total":
            table.add_section()
            label = "[bold]total[/]"
        table.add_row(label, f"{ms:.2f}")
    console.print(table)


def render_parity(console: Console, report) -> None:
    """One table per case; each row a compared tensor with its metrics and the threshold it must meet."""
    cases: dict[str, list] = {}
    for c in report.comparisons:
        case, _, stage = c.stage.partition(" ")
        cases.setdefault(case, []).append((stage, c))
    for case, rows in cases.items():
        table = _table(f"parity vs the PyTorch reference — {case}")
        table.add_column("check", overflow="fold")
        for col in ("cosine", "rel L2", "mean abs"):  # what "needs" names is measured here (max abs: the JSON)
            table.add_column(col, justify="right", no_wrap=True)
        table.add_column("needs", overflow="fold")
        table.add_column("", no_wrap=True)
        for stage, c in rows:
            if c.raw:  # compared through the family's feature view: the raw metrics, for information
                stage += f"\n[dim]raw: cosine {c.raw['cosine']:.6f}, mean abs {c.raw['mean_abs']:.1e}[/]"
            table.add_row(stage, f"{c.cosine:.6f}", f"{c.rel_l2:.1e}", f"{c.mean_abs:.1e}", c.threshold.describe(),
                          "[green]ok[/]" if c.passed else "[red]FAIL[/]")
        console.print(table)
    calibration = report.context.get("calibration")
    if calibration:
        source = calibration.get("source")
        style = "bold yellow" if source == "synthetic" else "green"
        console.print(f"calibration: [{style}]{source}[/] observations ({calibration.get('observations')})"
                      + (" — calibrate on recorded ones (`run --record DIR`, `export --calib DIR`) before trusting "
                         "fp8/int8 on a robot" if source == "synthetic" else ""), highlight=False)
    if report.context.get("note"):
        console.print(report.context["note"], style="dim", highlight=False)
    console.print(threshold_note(report.context.get("precisions") or {}), style="dim", highlight=False)


def threshold_note(precisions: Mapping[str, str]) -> str:
    """The thresholds of the precisions this export has (bf16 is judged as fp16), and where they are explained."""
    from ..verification.parity import THRESHOLDS, threshold_for

    classes = dict.fromkeys("fp16" if p == "bf16" else p for p in precisions.values()) or {"fp32": None}
    parts = []
    for precision in sorted(classes, key=list(THRESHOLDS["backbone"]).index):  # the table's order, every precision
        if precision == "fp32":
            parts.append(f"fp32 graphs match to float rounding ({threshold_for('backbone', 'fp32').describe()})")
            continue
        name = "fp16/bf16" if precision == "fp16" else precision
        parts.append(f"{name}: backbone {threshold_for('backbone', precision).describe()}, actions "
                     f"{threshold_for('normalised_action', precision).describe()}")
    return ("thresholds — " + "; ".join(parts) + " (README \"Prove it matches the original\", "
            "gr00t-trt verify --help)")


def render_graphs(console: Console, manifest) -> None:
    table = _table("exported graphs")
    table.add_column("graph")
    table.add_column("precision")
    table.add_column("inputs", overflow="fold")
    for name, graph in manifest.graphs.items():
        table.add_row(name, graph.precision, ", ".join(t.name for t in graph.inputs))
    console.print(table)


def render_graph_sizes(console: Console, sizes) -> None:
    """Per graph: precision, size on disk and the weight bytes an engine of it will hold (activations and
    workspace not included), with the totals."""
    table = _table("graph sizes")
    table.add_column("graph")
    table.add_column("precision")
    table.add_column("on disk", justify="right")
    table.add_column("engine weights (≈)", justify="right")
    for size in sizes:
        table.add_row(size.name, size.precision, human_bytes(size.on_disk), human_bytes(size.engine_weights))
    table.add_row("[b]total[/]", "", human_bytes(sum(s.on_disk for s in sizes)),
                  human_bytes(sum(s.engine_weights for s in sizes)))
    console.print(table)
