"""Writers of a benchmark or roofline report: rich console tables (readable at 80 columns), JSON,
markdown and a PNG chart of the per-stage breakdown (matplotlib, the optional ``plot`` extra).
Every file is written atomically. Torch-free."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from ..base.files import write_atomic
from .contention import mark
from .roofline import Roofline
from .runner import BenchReport
from .stats import LatencyStats

#: stage keys that add up others (never drawn as a slice of the breakdown)
AGGREGATES = ("pipeline", "total")
STAGE_LABELS = {"dit_context": "dit ctx", "state_encoder": "state enc", "action_head": "action head"}


def leaf_stages(stages: dict[str, Any]) -> list[str]:
    """Stages that do not overlap, in order: aggregates dropped, ``action_head`` dropped when its parts
    (state_encoder, denoise_k) are reported."""
    detailed = any(k.startswith("denoise_") for k in stages)
    return [k for k in stages if k not in AGGREGATES and not (detailed and k == "action_head")]


# ------------------------------------------------------------------------------------------ files
def write_json(path: str | Path, data: dict[str, Any]) -> Path:
    return write_atomic(path, json.dumps(data, indent=2, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return str(value)


# ------------------------------------------------------------------------------------------ formatting
def _ms(x: float) -> str:
    return f"{x:.1f}" if x >= 100 else f"{x:.2f}" if x >= 1 else f"{x:.3f}"


def _stats_row(label: str, s: LatencyStats) -> list[str]:
    return [label, _ms(s.p50), _ms(s.p90), _ms(s.p99), _ms(s.mean), _ms(s.std), f"{s.hz:.1f}"]


def precision_summary(precisions: dict[str, str]) -> str:
    """"fp32 (all 8 graphs)" or "fp16: vision_252x336; fp8: backbone, dit" — short enough for 80 columns."""
    groups: dict[str, list[str]] = {}
    for graph, precision in precisions.items():
        groups.setdefault(precision, []).append(graph)
    if len(groups) == 1:
        precision, graphs = next(iter(groups.items()))
        return f"{precision} (all {len(graphs)} graphs)"
    return "; ".join(f"{p}: {', '.join(g)}" for p, g in groups.items())


def header_lines(report: BenchReport) -> list[str]:
    """The reproducibility header, one fact per line."""
    h, m = report.header, report.header["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    git = m.get("git") or {}
    lines = [
        f"device: {m['device']} (backend {h['backend']})",
        f"cpu: {m['cpu']}, {m['cpu_threads']} threads usable of {m['logical_cores']}",
        f"versions: {versions}",
        f"driver: {m.get('nvidia_driver') or '-'}; power mode: {m.get('power_mode') or '-'}; "
        f"git: {git.get('commit', '-')}{' (dirty)' if git.get('dirty') else ''}",
        "precision: " + precision_summary(h["precisions"]),
        f"batch {h['batch']}, cameras {h['cameras']}, images "
        + ", ".join(f"{a}x{b}" for a, b in h["image_sizes"])
        + f", S {h['seq_len']} (bucket {h['shape_bucket']}), steps {h['steps']}, embodiment {h['embodiment']}",
        f"{h['iters']} measured calls after {h['warmup']} warm-up",
        report.contention.note(),  # the other processes' load during the timing, and its verdict
    ]
    return lines


def speedup_cell(report: BenchReport, speedup: float) -> str:
    """A speed-up as printed: withheld when the timing was noisy (unless --allow-noisy), then marked."""
    if report.speedups_withheld:
        return "withheld"
    return mark(f"{speedup:.2f}×", report.contention)


def comparison_lines(report: BenchReport) -> list[str]:
    """What to know before reading the speed-ups: how both sides were timed and whether they were withheld."""
    cmp, lines = report.reference, []
    if cmp.mode != "interleaved":
        lines.append("the reference ran after ours, not interleaved with it (it does not fit in memory next to "
                     "ours): a load change between the two runs is not cancelled out")
    if report.speedups_withheld:
        lines.append("speed-ups withheld: the machine was busy during the timing (see the NOISY line above) — "
                     "rerun on a quiet machine, or pass --allow-noisy to print them marked")
    return lines


# ------------------------------------------------------------------------------------------ console
def render_console(report: BenchReport, console: Any) -> None:
    """Rich tables of one benchmark: latency per stage, then roofline and reference when present."""
    from rich.table import Table

    for line in header_lines(report):
        console.print(line, highlight=False, markup=False)
    table = Table(title="latency (ms)", title_justify="left")
    for col in ("stage", "p50", "p90", "p99", "mean", "std", "Hz"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for key, s in report.stages.items():
        table.add_row(*_stats_row(STAGE_LABELS.get(key, key), s))
    table.add_row(*_stats_row("end to end", report.end_to_end), style="bold")
    console.print(table)
    gpu = report.header.get("gpu_memory_bytes")
    console.print(f"first call {report.first_call_ms:.1f} ms; peak host RSS {report.peak_rss_bytes / 2**30:.2f} GiB"
                  + (f"; GPU memory {gpu / 2**30:.2f} GiB" if gpu else ""), highlight=False)
    if report.roofline is not None:
        ours = report.roofline.totals("ours")
        ref = report.roofline.totals("reference")
        console.print(f"weights read per control step: ours {ours['weight_bytes'] / 1e9:.3f} GB, reference "
                      f"{ref['weight_bytes'] / 1e9:.3f} GB; GFLOP {ours['flops'] / 1e9:.1f} vs {ref['flops'] / 1e9:.1f}",
                      highlight=False)
    if report.floors:
        ratios = report.measured_over_floor
        table = Table(title=f"roofline on {report.device.name}", title_justify="left")
        for col in ("stage", "floor ms", "bound", "measured", "÷ floor"):
            table.add_column(col, justify="left" if col in ("stage", "bound") else "right")
        for key, floor in report.floors.items():
            measured = report.end_to_end.p50 if key == "total" else (report.stages[key].p50 if key in report.stages else None)
            table.add_row(key, _ms(floor.ms), floor.bound, "-" if measured is None else _ms(measured),
                          mark(f"{ratios[key]:.1f}×", report.contention) if key in ratios else "-")
        console.print(table)
    if report.reference is not None:
        render_reference(report, console)


def render_reference(report: BenchReport, console: Any) -> None:
    from rich.table import Table

    cmp = report.reference
    table = Table(title=f"vs PyTorch reference ({cmp.mode}), p50 ms", title_justify="left")
    for col in ("stage", "reference", "ours", "speed-up"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for key, row in cmp.rows().items():
        table.add_row(key, _ms(row["reference"]), _ms(row["ours"]), speedup_cell(report, row["speedup"]))
    console.print(table)
    for line in comparison_lines(report):
        console.print(line, highlight=False, markup=False)
    a = cmp.agreement
    console.print(f"actions: rel L2 {a['rel_l2']:.2e}, max abs {a['max_abs']:.2e}, cosine {a['cosine']:.6f}",
                  highlight=False)


def render_roofline_console(roof: Roofline, devices: list[Any], console: Any) -> None:
    """Model-only report: per-stage weights and FLOPs of both sides, then the floors per device."""
    from rich.table import Table

    table = Table(title="per control step: weights read (GB) / GFLOP", title_justify="left")
    for col in ("stage", "ours GB", "ref GB", "ours GFLOP", "ref GFLOP"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for stage in roof.stage_keys():
        o, r = roof.totals("ours", stage), roof.totals("reference", stage)
        table.add_row(stage, f"{o['weight_bytes'] / 1e9:.3f}", f"{r['weight_bytes'] / 1e9:.3f}",
                      f"{o['flops'] / 1e9:.1f}", f"{r['flops'] / 1e9:.1f}")
    o, r = roof.totals("ours"), roof.totals("reference")
    table.add_row("control step", f"{o['weight_bytes'] / 1e9:.3f}", f"{r['weight_bytes'] / 1e9:.3f}",
                  f"{o['flops'] / 1e9:.1f}", f"{r['flops'] / 1e9:.1f}", style="bold")
    console.print(table)
    console.print(f"DiT weights per denoising step: ours {roof.dit_params_per_step('ours') / 1e9:.3f} G, "
                  f"reference {roof.dit_params_per_step('reference') / 1e9:.3f} G", highlight=False)
    console.print("precision: " + precision_summary(roof.precisions), highlight=False)
    table = Table(title="predicted floor, ours (ms; bound: m = memory, c = compute)", title_justify="left")
    for col in ("device", "vision", "backbone", "dit ctx", "per step", "total", "reference"):
        table.add_column(col, justify="left" if col == "device" else "right")
    for d in devices:
        f, fr = roof.floors(d, "ours"), roof.floors(d, "reference")
        cell = lambda x: f"{_ms(x.ms)} {x.bound[0]}"  # noqa: E731
        table.add_row(d.key, cell(f["vision"]), cell(f["backbone"]), cell(f["dit_context"]), cell(f["denoise_0"]),
                      cell(f["total"]), _ms(fr["total"].ms))
    console.print(table)
    for note in roof.notes:
        console.print(f"note: {note}", highlight=False, markup=False)


# ------------------------------------------------------------------------------------------ markdown
def to_markdown(report: BenchReport) -> str:
    lines = ["# gr00t-trt bench", ""]
    lines += [f"- {line}" for line in header_lines(report)]
    lines += [f"- first call: {report.first_call_ms:.1f} ms; peak host RSS {report.peak_rss_bytes / 2**30:.2f} GiB", ""]
    lines += ["| stage | p50 ms | p90 | p99 | mean | std | Hz |", "|---|---|---|---|---|---|---|"]
    for key, s in report.stages.items():
        lines.append("| " + " | ".join(_stats_row(key, s)) + " |")
    lines.append("| **end to end** | " + " | ".join(_stats_row("", report.end_to_end)[1:]) + " |")
    lines.append("")
    lines.append("End to end is one wall-clock measurement around `get_action`; stages are the policy's own timings.")
    if report.roofline is not None:
        lines += ["", roofline_markdown(report.roofline, [report.device] if report.device else [])]
    if report.floors:
        ratios = report.measured_over_floor
        lines += ["", f"## Measured ÷ floor on {report.device.name}", "", "| stage | floor ms | bound | ÷ floor |",
                  "|---|---|---|---|"]
        for key, floor in report.floors.items():
            ratio = mark(f"{ratios[key]:.2f}×", report.contention) if key in ratios else "-"
            lines.append(f"| {key} | {_ms(floor.ms)} | {floor.bound} | {ratio} |")
    if report.reference is not None:
        cmp = report.reference
        lines += ["", f"## Against the PyTorch reference ({cmp.mode})", "", "| stage | reference ms | ours ms | speed-up |",
                  "|---|---|---|---|"]
        for key, row in cmp.rows().items():
            lines.append(f"| {key} | {_ms(row['reference'])} | {_ms(row['ours'])} | {speedup_cell(report, row['speedup'])} |")
        notes = comparison_lines(report)
        lines += ["", *notes] if notes else []
        a = cmp.agreement
        lines += ["", f"Actions: rel L2 {a['rel_l2']:.2e}, max abs {a['max_abs']:.2e}, cosine {a['cosine']:.6f}."]
    return "\n".join(lines) + "\n"


def roofline_markdown(roof: Roofline, devices: list[Any]) -> str:
    w = roof.workload
    images = ", ".join(f"{n}× {h}x{wd}" for h, wd, n in w.images) or "none"
    lines = ["## Roofline (per control step)", "",
             f"Workload: batch {w.batch}, images {images}, S {w.seq_len} (ours padded to {w.padded_seq_len}), "
             f"{w.steps} denoising steps. Weights read per control step at the precision of each graph; "
             "activations are not counted.", "",
             "| stage | ours GB | reference GB | ours GFLOP | reference GFLOP |", "|---|---|---|---|---|"]
    for stage in roof.stage_keys():
        o, r = roof.totals("ours", stage), roof.totals("reference", stage)
        lines.append(f"| {stage} | {o['weight_bytes'] / 1e9:.3f} | {r['weight_bytes'] / 1e9:.3f} | "
                     f"{o['flops'] / 1e9:.1f} | {r['flops'] / 1e9:.1f} |")
    o, r = roof.totals("ours"), roof.totals("reference")
    lines.append(f"| **control step** | {o['weight_bytes'] / 1e9:.3f} | {r['weight_bytes'] / 1e9:.3f} | "
                 f"{o['flops'] / 1e9:.1f} | {r['flops'] / 1e9:.1f} |")
    lines += ["", f"DiT weights per denoising step: ours {roof.dit_params_per_step('ours') / 1e9:.3f} G, reference "
              f"{roof.dit_params_per_step('reference') / 1e9:.3f} G. Precision: "
              + precision_summary(roof.precisions) + "."]
    if devices:
        lines += ["", "| device | vision | backbone | dit_context | per step | total (ours) | bound | total (reference) |",
                  "|---|---|---|---|---|---|---|---|"]
        for d in devices:
            f, fr = roof.floors(d, "ours"), roof.floors(d, "reference")
            lines.append(f"| {d.name} | {_ms(f['vision'].ms)} | {_ms(f['backbone'].ms)} | {_ms(f['dit_context'].ms)} | "
                         f"{_ms(f['denoise_0'].ms)} | {_ms(f['total'].ms)} | {f['total'].bound} | {_ms(fr['total'].ms)} |")
        lines += ["", "Floors in ms, predicted (not measured): Σ per item of max(weight bytes / bandwidth, FLOPs / dense throughput)."]
    lines += [f"- {n}" for n in roof.notes]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ PNG
def write_png(report: BenchReport, path: str | Path) -> Path:
    """``bench_figure`` written atomically as a PNG."""
    fig = bench_figure(report)
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png")
    finally:
        plt.close(fig)
    return write_atomic(path, buffer.getvalue())


def bench_figure(report: BenchReport) -> Any:
    """A horizontal stacked bar of the per-stage p50 (ours, and the reference beside it when compared),
    the end-to-end p50 marked with a whisker to the p99, and the contention note under the chart; what
    the stages do not cover is drawn as "other"."""
    from ..base.errors import require

    matplotlib = require("matplotlib", "gr00t-trt[plot]", "the --plot chart")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # (label, stage p50s, end-to-end stats): the bar is the p50 breakdown, the whisker reaches the p99
    bars: list[tuple[str, dict[str, float], LatencyStats]] = []
    label = f"ours ({report.header['backend']})"
    if report.reference is None:
        bars.append((label, {k: report.stages[k].p50 for k in leaf_stages(report.stages)}, report.end_to_end))
    else:  # both sides from the comparison's own run, in the reference's grouping, so colours match
        cmp = report.reference
        bars.append((label, {k: s.p50 for k, s in cmp.ours.items()}, cmp.ours_e2e))
        bars.append(("PyTorch reference", cmp.reference_stage_p50(), cmp.reference_e2e))
    stage_order: list[str] = []
    for _, stages, _ in bars:
        stage_order += [k for k in stages if k not in stage_order]
    stage_order.append("other")
    colours = list(plt.get_cmap("tab10")(range(10))) * (1 + len(stage_order) // 10)
    colours[len(stage_order) - 1] = (0.75, 0.75, 0.75, 1.0)  # "other": grey
    axis_max = max(b[2].p99 for b in bars)
    fig, ax = plt.subplots(figsize=(10, 1.8 + 0.8 * len(bars) + 0.1 * len(stage_order)), dpi=120)
    for row, (_, stages, stats) in enumerate(bars):
        left, e2e = 0.0, stats.p50
        parts = dict(stages)
        parts["other"] = max(e2e - sum(stages.values()), 0.0)
        for i, key in enumerate(stage_order):
            width = parts.get(key, 0.0)
            if width <= 0:
                continue
            ax.barh(row, width, left=left, color=colours[i], edgecolor="white",
                    label=key if row == 0 or key not in bars[0][1] else None)
            if width / max(axis_max, 1e-9) > 0.05:
                ax.text(left + width / 2, row, f"{width:.1f}", ha="center", va="center", fontsize=8)
            left += width
        ax.plot([e2e, e2e], [row - 0.45, row + 0.45], color="black", linewidth=2)
        ax.errorbar(e2e, row, xerr=[[0.0], [max(stats.p99 - e2e, 0.0)]], color="black", capsize=6, linewidth=1)
        ax.text(stats.p99, row, f" p50 {e2e:.1f} ms\n p99 {stats.p99:.1f} ms", ha="left", va="center", fontsize=8)
    ax.set_xlim(0, axis_max * 1.3)
    ax.set_yticks(range(len(bars)), [b[0] for b in bars])
    ax.invert_yaxis()
    ax.set_xlabel("ms per control step (bars: p50 per stage; whisker: end-to-end p50 → p99)")
    noisy = report.contention.noisy
    fig.text(0.01, 0.01, report.contention.note(), fontsize=7, color="firebrick" if noisy else "dimgray",
             ha="left", va="bottom", wrap=True)
    m = report.header["machine"]
    ax.set_title(f"gr00t-trt bench — {m['device']}, batch {report.header['batch']}, "
                 f"{report.header['cameras']} camera(s), {report.header['steps']} steps", fontsize=10)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=False))
    ax.legend(unique.values(), unique.keys(), loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8,
              frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))  # room for the contention note
    return fig

