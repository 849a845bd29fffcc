"""Roofline: weight bytes read and FLOPs of one control step, ours vs the unoptimised reference, and the
latency floor they imply on a device.

At batch 1 a VLA policy is bound by weight traffic, not arithmetic (architecture §8): every GEMM reads
its whole weight matrix to multiply a few dozen rows. So a roofline counts, per graph execution, the
weight elements read (GEMM matrices, which fp8 stores in 1 byte, apart from norms, biases, tables and
gathered embedding rows, which stay 2 bytes) and the FLOPs (2·m·k·n per GEMM plus attention's two
matmuls; element-wise work is ignored), and how often each runs per control step. Activations are not
counted: this is a weight-traffic floor, a lower bound.

What a model computes is its family's (``ModelFamily.roofline()``: ``families/n16/roofline.py``,
``families/n17/roofline.py``): the work items of both sides from the config alone, the prompt of a
typical workload and the parameter counts that prove the config against a checkpoint's headers. This
module is the machinery they share: work items, precisions, totals and the floor of one item, which is
max(bytes / bandwidth, FLOPs / dense throughput at its precision); a stage's floor is the sum over its
items (the graphs run in sequence), bounded by whichever resource most of that time is spent on.
Stdlib only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..base.errors import CheckpointError, Gr00tTrtError
from .devices import DeviceSpec

#: precisions a graph can be exported at
PRECISIONS = ("fp32", "fp16", "bf16", "fp8", "int8")
#: bytes of one (GEMM weight, other weight) element at each precision
ELEMENT_BYTES: dict[str, tuple[float, float]] = {
    "fp32": (4, 4), "fp16": (2, 2), "bf16": (2, 2), "fp8": (1, 2), "int8": (1, 2), "fp4": (0.5, 2),
}
#: graph kinds in run order (GRAPH_SPECS order, vision first)
GRAPH_KINDS = ("vision", "backbone", "dit_context", "state_encoder", "action_encoder", "dit", "action_decoder")
SIDES = ("ours", "reference")


@dataclass(frozen=True)
class Workload:
    """The shapes of one control step: batch, backbone sequence length, images by size, steps."""

    batch: int
    seq_len: int  # S as the reference runs it
    padded_seq_len: int  # S as our graphs run it (the runtime pads up to a bucket)
    images: tuple[tuple[int, int, int], ...]  # (h, w, images of that size per sample)
    steps: int

    def to_dict(self) -> dict[str, Any]:
        return {"batch": self.batch, "seq_len": self.seq_len, "padded_seq_len": self.padded_seq_len,
                "images": [list(g) for g in self.images], "steps": self.steps}


def workload(image_sizes: Iterable[tuple[int, int]], tokens_of: Any, text_tokens: int, *, cameras: int = 1,
             batch: int = 1, steps: int, bucket: int = 32) -> Workload:
    """A typical prompt of ``cameras`` images (cycling through ``image_sizes``) and ``text_tokens`` other
    tokens; ``tokens_of(h, w)``: the sequence tokens one image of that size takes (with its tags). S is
    padded up to a multiple of ``bucket`` for our graphs, as the runtime does."""
    sizes = list(image_sizes)
    if cameras < 0 or batch < 1 or not sizes:
        raise Gr00tTrtError(f"workload: expected cameras ≥ 0, batch ≥ 1 and an image size, got {cameras}, {batch}, {sizes}")
    counts: dict[tuple[int, int], int] = {}
    for i in range(cameras):
        size = tuple(sizes[i % len(sizes)])
        counts[size] = counts.get(size, 0) + 1
    seq = text_tokens + sum(tokens_of(h, w) * n for (h, w), n in counts.items())
    padded = -(-seq // bucket) * bucket
    return Workload(batch, seq, padded, tuple((h, w, n) for (h, w), n in counts.items()), steps)


@dataclass(frozen=True)
class WorkItem:
    """One kind of work of a control step: elements read and FLOPs per execution, executions per step."""

    side: str  # "ours" | "reference"
    stage: str  # timing stage: vision, backbone, dit_context, state_encoder, denoise
    graph: str  # graph kind whose precision applies (the reference's modules map onto ours)
    what: str
    gemm_params: int  # weight-matrix elements read per execution (quantised at fp8)
    other_params: int  # norms, biases, table rows, gathered embedding rows (2 bytes at fp8)
    flops: int
    times: int = 1
    #: GEMMs the family's fp8 plan keeps at fp16 although their graph is fp8 (its FP8_KEEP / not planned)
    fp8_kept: bool = False

    @property
    def params(self) -> int:
        return self.gemm_params + self.other_params

    def weight_bytes(self, precision: str) -> float:
        gemm, other = ELEMENT_BYTES[precision]
        return self.gemm_params * gemm + self.other_params * other


def linear(fan_in: int, fan_out: int, rows: int, bias: bool = True) -> tuple[int, int, int]:
    """(gemm elements, bias elements, FLOPs) of a linear layer on ``rows`` rows."""
    return fan_in * fan_out, fan_out if bias else 0, 2 * rows * fan_in * fan_out


class Ledger:
    """Collects WorkItems for one side."""

    def __init__(self, side: str) -> None:
        self.side, self.items = side, []

    def add(self, stage: str, graph: str, what: str, gemm: int = 0, other: int = 0, flops: int = 0,
            times: int = 1, fp8_kept: bool = False) -> None:
        self.items.append(WorkItem(self.side, stage, graph, what, int(gemm), int(other), int(flops), int(times),
                                   fp8_kept))

    def linears(self, stage: str, graph: str, what: str, layers: Iterable[tuple[int, int, int, bool]],
                times: int = 1, extra_other: int = 0, fp8_kept: bool = False) -> None:
        """Several linears summed into one item: (fan_in, fan_out, rows, bias) each."""
        gemm = other = flops = 0
        for fan_in, fan_out, rows, bias in layers:
            g, o, f = linear(fan_in, fan_out, rows, bias)
            gemm, other, flops = gemm + g, other + o, flops + f
        self.add(stage, graph, what, gemm, other + extra_other, flops, times, fp8_kept)


class RooflineModel(Protocol):
    """What a family's roofline module declares (``ModelFamily.roofline()``)."""

    def config_from_manifest(self, model: dict, source: str) -> Any:
        """The family's config from an export manifest's ``model`` section."""

    def default_workload(self, config: Any, image_sizes: Iterable[tuple[int, int]] = ..., *, cameras: int = 1,
                         batch: int = 1, steps: int | None = None, bucket: int = 32) -> Workload:
        """A typical prompt of the family for ``cameras`` images."""

    def count_work(self, config: Any, workload: Workload, side: str) -> list[WorkItem]:
        """Every weight read and FLOP of one control step on ``side`` ("ours" | "reference")."""

    def stored_params(self, config: Any) -> dict[str, int]:
        """Parameters per ``inspect`` component a checkpoint of ``config`` holds (the header check)."""


def check_stored_params(expected: Mapping[str, int], counted: Mapping[str, int], source: str) -> None:
    """Raise when a checkpoint's header counts (``inspect`` components) differ from what its config
    implies (the family's ``stored_params``): such weights are not the model the roofline describes."""
    wrong = [f"{name} {counted.get(name, 0):,} (config implies {want:,})"
             for name, want in expected.items() if counted.get(name, 0) != want]
    if wrong:
        raise CheckpointError(
            f"roofline: {source} does not hold the model its config describes — {'; '.join(wrong)} — "
            "check that config.json belongs to these weights"
        )


# ------------------------------------------------------------------------------------------ totals and floors
@dataclass(frozen=True)
class StageFloor:
    """Predicted minimum of one stage on one device."""

    ms: float
    memory_ms: float  # Σ weight bytes / bandwidth
    compute_ms: float  # Σ FLOPs / dense throughput
    bound: str  # "memory" | "compute": where most of ``ms`` is spent

    def to_dict(self) -> dict[str, Any]:
        return {"ms": self.ms, "memory_ms": self.memory_ms, "compute_ms": self.compute_ms, "bound": self.bound}


@dataclass
class Roofline:
    """Both sides' work of one control step at given per-graph precisions."""

    config: Any  # the family's config
    workload: Workload
    precisions: dict[str, str]  # graph kind -> precision
    items: dict[str, list[WorkItem]] = field(default_factory=dict)  # side -> items
    notes: list[str] = field(default_factory=list)

    # --------------------------------------------------------------- building
    @classmethod
    def build(cls, config: Any, workload: Workload, precisions: Mapping[str, str] | str,
              model: RooflineModel) -> Roofline:
        """Both sides' work from ``model`` (the config's family roofline) at ``precisions``."""
        if isinstance(precisions, str):
            precisions = dict.fromkeys(GRAPH_KINDS, precisions)
        unknown = {p for p in precisions.values() if p not in PRECISIONS}
        if unknown:
            raise Gr00tTrtError(f"roofline: unknown precision {sorted(unknown)[0]!r} — expected one of: {', '.join(PRECISIONS)}")
        missing = [k for k in GRAPH_KINDS if k not in precisions]
        if missing:
            raise Gr00tTrtError(f"roofline: no precision for graph kind(s) {', '.join(missing)}")
        return cls(config, workload, dict(precisions), {side: model.count_work(config, workload, side) for side in SIDES})

    # --------------------------------------------------------------- sums
    def precision(self, item: WorkItem) -> str:
        precision = self.precisions[item.graph]
        # each family's int8 plan keeps the backbone GEMMs its fp8 plan keeps
        return "fp16" if precision in ("fp8", "int8") and item.fp8_kept else precision

    def stage_keys(self) -> list[str]:
        """Timing stages in run order: vision, backbone, dit_context, state_encoder, denoise_0..N−1."""
        return ["vision", "backbone", "dit_context", "state_encoder", *(f"denoise_{k}" for k in range(self.workload.steps))]

    def _stage_items(self, side: str, stage: str) -> list[tuple[WorkItem, int]]:
        """(item, executions within this stage) pairs; a denoise_k stage holds one execution."""
        if stage.startswith("denoise_"):
            return [(it, 1) for it in self.items[side] if it.stage == "denoise"]
        return [(it, it.times) for it in self.items[side] if it.stage == stage]

    def totals(self, side: str, stage: str | None = None) -> dict[str, float]:
        """params, weight_bytes and flops of one stage (or the whole control step when None)."""
        pairs = self._stage_items(side, stage) if stage else [(it, it.times) for it in self.items[side]]
        return {
            "params": sum(it.params * n for it, n in pairs),
            "weight_bytes": sum(it.weight_bytes(self.precision(it)) * n for it, n in pairs),
            "flops": sum(it.flops * n for it, n in pairs),
        }

    def dit_params_per_step(self, side: str) -> int:
        """Weights of the DiT read in one denoising step (architecture §8: 0.83 G ours, 1.09 G reference)."""
        return sum(it.params for it in self.items[side] if it.stage == "denoise" and it.graph == "dit")

    # --------------------------------------------------------------- floors
    def floors(self, device: DeviceSpec, side: str = "ours") -> dict[str, StageFloor]:
        """Predicted floor per stage, plus "action_head" (state encoder + the denoising steps, as the
        runtime times it) and "total" (the whole control step, end to end)."""
        out = {stage: self._floor(device, self._stage_items(side, stage)) for stage in self.stage_keys()}
        head = [k for k in out if k == "state_encoder" or k.startswith("denoise_")]
        out["action_head"] = _sum_floors(out[k] for k in head)
        out["total"] = _sum_floors(out[k] for k in self.stage_keys())
        return out

    def _floor(self, device: DeviceSpec, pairs: list[tuple[WorkItem, int]]) -> StageFloor:
        total = mem_total = comp_total = mem_bound = 0.0
        for it, n in pairs:
            used, tflops = device.rate(self.precision(it))
            mem = it.weight_bytes(used) * n / (device.memory_gbs * 1e9) * 1e3
            comp = it.flops * n / (tflops * 1e12) * 1e3
            total += max(mem, comp)
            mem_total += mem
            comp_total += comp
            mem_bound += mem if mem >= comp else 0.0
        return StageFloor(total, mem_total, comp_total, "memory" if mem_bound >= total / 2 else "compute")

    def fallbacks(self, device: DeviceSpec) -> dict[str, str]:
        """graph -> precision used on ``device`` where it cannot run the exported one."""
        return {g: device.rate(p)[0] for g, p in self.precisions.items() if device.rate(p)[0] != ("fp16" if p == "bf16" else p)}

    # --------------------------------------------------------------- report
    def to_dict(self, devices: Iterable[DeviceSpec] = ()) -> dict[str, Any]:
        sides = {}
        for side in SIDES:
            sides[side] = {
                "per_control_step": self.totals(side),
                "dit_params_per_denoising_step": self.dit_params_per_step(side),
                "stages": {stage: self.totals(side, stage) for stage in self.stage_keys()},
                "items": [{"stage": it.stage, "graph": it.graph, "what": it.what, "gemm_params": it.gemm_params,
                           "other_params": it.other_params, "flops": it.flops, "times": it.times,
                           "fp8_kept": it.fp8_kept}
                          for it in self.items[side]],
            }
        return {
            "workload": self.workload.to_dict(),
            "precisions": self.precisions,
            "sides": sides,
            "floors_ms": {
                d.key: {"name": d.name, "memory_gbs": d.memory_gbs, "fallbacks": self.fallbacks(d),
                        **{side: {k: f.to_dict() for k, f in self.floors(d, side).items()} for side in SIDES}}
                for d in devices
            },
            "notes": self.notes,
        }


def _sum_floors(floors: Iterable[StageFloor]) -> StageFloor:
    floors = list(floors)
    ms = sum(f.ms for f in floors)
    memory_share = sum(f.ms for f in floors if f.bound == "memory")
    return StageFloor(ms, sum(f.memory_ms for f in floors), sum(f.compute_ms for f in floors),
                      "memory" if memory_share >= ms / 2 else "compute")


def measured_over_floor(measured_ms: Mapping[str, float], floors: Mapping[str, StageFloor]) -> dict[str, float]:
    """measured ÷ floor for every stage both know (``total`` is matched to the end-to-end time)."""
    return {k: measured_ms[k] / f.ms for k, f in floors.items() if k in measured_ms and f.ms > 0}
