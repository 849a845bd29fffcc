"""Roofline: weight bytes read and FLOPs of one control step, ours vs the unoptimised reference, and the
latency floor they imply on a device.

At batch 1 a VLA policy is bound by weight traffic, not arithmetic (architecture §8): every GEMM reads
its whole weight matrix to multiply a few dozen rows. So the model counts, per graph execution, the
weight elements read (GEMM matrices, which fp8 stores in 1 byte, apart from norms, biases, tables and
gathered embedding rows, which stay 2 bytes) and the FLOPs (2·m·k·n per GEMM plus attention's two
matmuls; element-wise work is ignored), and how often each runs per control step. The counts come from
the model config alone — every shape of N1.6 follows from it — and ``check_stored_params`` proves them
against a checkpoint's safetensors headers. Activations (including the cross K/V our DiT re-reads every
step) are not counted: this is a weight-traffic floor, a lower bound.

Ours is what the exported graphs compute (architecture §4): K/V of the cross blocks once per control
step in ``dit_context``, the AdaLN/output modulation and the action encoder's timestep half as per-step
table rows, only the H action positions through the output layer and decoder, embodiment-specific
weights read one slice at a time. The reference is ``Gr00tN1d6.reference_get_action`` as the original
computes it. Both are counted at the same precision per graph, so their ratio is the algorithm's alone.

The floor of one item is max(bytes / bandwidth, FLOPs / dense throughput at its precision); a stage's
floor is the sum over its items (the graphs run in sequence), bounded by whichever resource most of
that time is spent on. Stdlib only (the config module is stdlib only too).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..base.errors import CheckpointError, Gr00tTrtError
from ..families.n16.config import Gr00tConfig
from ..families.n16.fp8_plan import is_planned
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
#: prompt tokens around the images: system prompt / chat template before them, instruction after,
#: and the tag tokens wrapping each image (`<image k>`, `<img>` ... `</img>`, newlines)
PROMPT_TOKENS, INSTRUCTION_TOKENS, TAGS_PER_IMAGE = 16, 10, 7


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


def default_workload(config: Gr00tConfig, image_sizes: Iterable[tuple[int, int]] = ((252, 336),), *,
                     cameras: int = 1, batch: int = 1, steps: int | None = None, bucket: int = 32) -> Workload:
    """A typical prompt: ``cameras`` images (cycling through ``image_sizes``), their tags and a short
    instruction; S padded up to a multiple of ``bucket`` for our graphs, as the runtime does."""
    sizes = list(image_sizes)
    if cameras < 0 or batch < 1 or not sizes:
        raise Gr00tTrtError(f"workload: expected cameras ≥ 0, batch ≥ 1 and an image size, got {cameras}, {batch}, {sizes}")
    counts: dict[tuple[int, int], int] = {}
    for i in range(cameras):
        size = tuple(sizes[i % len(sizes)])
        counts[size] = counts.get(size, 0) + 1
    pixels = config.patch_tokens_per_image_pixel
    seq = PROMPT_TOKENS + INSTRUCTION_TOKENS + sum((h * w // pixels + TAGS_PER_IMAGE) * n for (h, w), n in counts.items())
    padded = -(-seq // bucket) * bucket
    return Workload(batch, seq, padded, tuple((h, w, n) for (h, w), n in counts.items()),
                    steps if steps is not None else config.num_inference_timesteps)


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
    #: GEMMs the fp8 plan keeps at fp16 although their graph is fp8 (``fp8_plan.FP8_KEEP`` / not planned)
    fp8_kept: bool = False

    @property
    def params(self) -> int:
        return self.gemm_params + self.other_params

    def weight_bytes(self, precision: str) -> float:
        gemm, other = ELEMENT_BYTES[precision]
        return self.gemm_params * gemm + self.other_params * other


def _linear(fan_in: int, fan_out: int, rows: int, bias: bool = True) -> tuple[int, int, int]:
    """(gemm elements, bias elements, FLOPs) of a linear layer on ``rows`` rows."""
    return fan_in * fan_out, fan_out if bias else 0, 2 * rows * fan_in * fan_out


class _Ledger:
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
            g, o, f = _linear(fan_in, fan_out, rows, bias)
            gemm, other, flops = gemm + g, other + o, flops + f
        self.add(stage, graph, what, gemm, other + extra_other, flops, times, fp8_kept)


# ------------------------------------------------------------------------------------------ backbone
def _vision(led: _Ledger, c: Gr00tConfig, w: Workload, *, ours: bool) -> None:
    v, bb = c.backbone.vision, c.backbone
    cv, iv, layers = v.hidden_size, v.intermediate_size, v.num_hidden_layers
    for h, wd, count in w.images:
        n = count * w.batch
        p = (h // v.patch_size) * (wd // v.patch_size)  # patches per image
        rows, graph = n * p, "vision"
        stage = f"vision_{h}x{wd}"
        led.linears("vision", graph, f"{stage}: patch embedding ({n} × {p} patches)",
                    [(v.patch_size**2 * v.num_channels, cv, rows, True)],
                    extra_other=(p if ours else v.num_patches) * cv)  # ours: pos-emb pre-resized per size
        per_layer = [(cv, cv, rows, True)] * 4 + [(cv, iv, rows, True), (iv, cv, rows, True)]
        led.linears("vision", graph, f"{stage}: {layers} encoder layers", per_layer * layers,
                    extra_other=layers * 4 * cv + 2 * cv)  # two LayerNorms per layer + post-LN
        led.add("vision", graph, f"{stage}: attention QKᵀ and PV (per image)", flops=layers * 2 * 2 * n * p * p * cv)
        t = p // bb.unshuffle_factor**2
        led.linears("vision", graph, f"{stage}: projector mlp1 ({n} × {t} tokens)",
                    [(bb.projector_in_dim, c.backbone_embedding_dim, n * t, True),
                     (c.backbone_embedding_dim, c.backbone_embedding_dim, n * t, True)],
                    extra_other=2 * bb.projector_in_dim)


def _llm(led: _Ledger, c: Gr00tConfig, w: Workload, seq: int) -> None:
    t = c.backbone.text
    e, layers, rows = t.hidden_size, c.select_layer, w.batch * seq
    q, kv = t.num_attention_heads * t.head_dim, t.num_key_value_heads * t.head_dim
    led.add("backbone", "backbone", f"embed_tokens: {rows} gathered rows", other=rows * e)
    per_layer = {"self_attn.q_proj": (e, q), "self_attn.k_proj": (e, kv), "self_attn.v_proj": (e, kv),
                 "self_attn.o_proj": (q, e), "mlp.gate_proj": (e, t.intermediate_size),
                 "mlp.up_proj": (e, t.intermediate_size), "mlp.down_proj": (t.intermediate_size, e)}
    planned = [is_planned("backbone", f"layers.{i}.{name}") for i in range(layers) for name in per_layer]
    shapes = [(*shape, rows, False) for _ in range(layers) for shape in per_layer.values()]
    led.linears("backbone", "backbone", f"{layers} Qwen3 layers on S = {seq}: fp8-planned GEMMs",
                [s for s, p in zip(shapes, planned, strict=True) if p],
                extra_other=layers * (2 * t.head_dim + 2 * e) + e)  # q/k norms, 2 RMSNorms; final norm
    led.linears("backbone", "backbone", f"{layers} Qwen3 layers on S = {seq}: GEMMs the fp8 plan keeps at fp16",
                [s for s, p in zip(shapes, planned, strict=True) if not p], fp8_kept=True)
    causal_pairs = w.batch * seq * (seq + 1) // 2
    led.add("backbone", "backbone", "causal attention QKᵀ and PV", flops=layers * 2 * 2 * causal_pairs * q)


# ------------------------------------------------------------------------------------------ action head
def _state_encoder(led: _Ledger, c: Gr00tConfig, w: Workload) -> None:
    led.linears("state_encoder", "state_encoder", "state encoder (one embodiment's slice)",
                [(c.max_state_dim, c.hidden_size, w.batch, True), (c.hidden_size, c.input_embedding_dim, w.batch, True)])


def _block_kinds(c: Gr00tConfig) -> list[str]:
    """text / self / image per DiT block (same rule as gr00t_trt.model.action_head.dit_block_kinds,
    restated here because that module imports torch)."""
    period = 2 * c.attend_text_every_n_blocks
    return ["self" if i % 2 else ("text" if i % period == 0 else "image") for i in range(c.dit.num_layers)]


def _denoise_step(led: _Ledger, c: Gr00tConfig, w: Workload, seq: int, *, ours: bool) -> None:
    b, h, dim, e = w.batch, c.action_horizon, c.input_embedding_dim, c.backbone_embedding_dim
    tokens = h + 1  # the state token and the H action tokens
    n, rows = w.steps, b * (h + 1)
    kinds = _block_kinds(c)
    n_self = kinds.count("self")
    n_cross = len(kinds) - n_self
    ff = 4 * dim
    # ---- action encoder
    if ours:
        led.linears("denoise", "action_encoder", "action encoder W1, W2 action half, W3",
                    [(c.max_action_dim, dim, b * h, True), (dim, dim, b * h, False), (dim, dim, b * h, True)],
                    times=n, extra_other=dim + h * dim)  # time-table row (PE·W2_t + b2), position rows
    else:
        led.linears("denoise", "action_encoder", "action encoder W1, W2 (on [a, PE(τ)]), W3",
                    [(c.max_action_dim, dim, b * h, True), (2 * dim, dim, b * h, True), (dim, dim, b * h, True)],
                    times=n, extra_other=h * dim)
    # ---- DiT conditioning: tables (ours) or the timestep MLP and modulation linears (reference)
    if ours:
        led.add("denoise", "dit", "AdaLN and output modulation: one step's table rows",
                other=len(kinds) * 2 * dim + 2 * dim, times=n)
    else:
        tp = c.dit.timestep_proj_dim
        led.linears("denoise", "dit", "timestep MLP (m = B)", [(tp, dim, b, True), (dim, dim, b, True)], times=n)
        led.linears("denoise", "dit", f"AdaLN modulation linears ×{len(kinds)} (m = B)",
                    [(dim, 2 * dim, b, True)] * len(kinds), times=n)
        led.linears("denoise", "dit", "proj_out_1 output modulation (m = B)", [(dim, 2 * dim, b, True)], times=n)
        led.linears("denoise", "dit", f"cross-attention to_k/to_v ×{n_cross} on S = {seq}",
                    [(e, dim, b * seq, True)] * (2 * n_cross), times=n)
    # ---- what both compute every step
    led.linears("denoise", "dit", f"to_q + to_out + feed-forward ×{len(kinds)}",
                [(dim, dim, rows, True), (dim, dim, rows, True), (dim, ff, rows, True), (ff, dim, rows, True)]
                * len(kinds), times=n)
    led.linears("denoise", "dit", f"self-attention to_k/to_v ×{n_self}", [(dim, dim, rows, True)] * (2 * n_self), times=n)
    attention = n_self * 2 * 2 * b * tokens * tokens * dim + n_cross * 2 * 2 * b * tokens * seq * dim
    led.add("denoise", "dit", "attention QKᵀ and PV", flops=attention, times=n)
    out_rows = b * h if ours else rows  # ours: only the action positions through the output layer
    led.linears("denoise", "dit", f"proj_out_2 on {out_rows // b} tokens", [(dim, c.hidden_size, out_rows, True)], times=n)
    led.linears("denoise", "action_decoder", f"action decoder on {out_rows // b} tokens",
                [(c.hidden_size, c.hidden_size, out_rows, True), (c.hidden_size, c.max_action_dim, out_rows, True)],
                times=n)


def count_work(config: Gr00tConfig, workload: Workload, side: str) -> list[WorkItem]:
    """Every weight read and FLOP of one control step on ``side`` ("ours" | "reference")."""
    if side not in SIDES:
        raise Gr00tTrtError(f"roofline side {side!r} — expected one of: {', '.join(SIDES)}")
    ours = side == "ours"
    seq = workload.padded_seq_len if ours else workload.seq_len
    led = _Ledger(side)
    _vision(led, config, workload, ours=ours)
    _llm(led, config, workload, seq)
    e, dim = config.backbone_embedding_dim, config.input_embedding_dim
    if ours:
        n_cross = sum(k != "self" for k in _block_kinds(config))
        led.linears("dit_context", "dit_context", f"VLLN, stacked cross to_k/to_v of {n_cross} blocks on S = {seq}",
                    [(e, n_cross * dim, workload.batch * seq, True)] * 2, extra_other=2 * e)
    else:
        led.add("dit_context", "dit_context", "VLLN", other=2 * e)
    _state_encoder(led, config, workload)
    _denoise_step(led, config, workload, seq, ours=ours)
    return led.items


# ------------------------------------------------------------------------------------------ header check
def stored_params(config: Gr00tConfig) -> dict[str, int]:
    """Parameters each ``inspect`` component must hold for this config (all embodiment slots), derived
    from the same shape rules as ``count_work``: a checkpoint whose headers disagree is not the model
    the roofline describes."""
    c, v, t = config, config.backbone.vision, config.backbone.text
    slots, dim, hid = c.max_num_embodiments, c.input_embedding_dim, c.hidden_size
    cv, iv = v.hidden_size, v.intermediate_size
    vision = (v.patch_size**2 * v.num_channels + 1) * cv + v.num_patches * cv + 2 * cv
    vision += v.num_hidden_layers * (4 * (cv * cv + cv) + (cv * iv + iv) + (iv * cv + cv) + 4 * cv)
    proj_in, emb = c.backbone.projector_in_dim, c.backbone_embedding_dim
    q, kv = t.num_attention_heads * t.head_dim, t.num_key_value_heads * t.head_dim
    layer = 2 * emb * q + 2 * emb * kv + 3 * emb * t.intermediate_size + 2 * t.head_dim + 2 * emb
    kinds = _block_kinds(c)
    block_common = (dim * 2 * dim + 2 * dim) + 2 * (dim * dim + dim) + (dim * 4 * dim + 4 * dim) + (4 * dim * dim + dim)
    cross = block_common + 2 * (emb * dim + dim)
    self_ = block_common + 2 * (dim * dim + dim)
    tp = c.dit.timestep_proj_dim
    dit = (tp * dim + dim) + (dim * dim + dim) + sum(cross if k != "self" else self_ for k in kinds)
    dit += (dim * 2 * dim + 2 * dim) + (dim * hid + hid)
    return {
        "vision": vision,
        "projector": 2 * proj_in + proj_in * emb + emb + emb * emb + emb,
        "LLM embed": t.vocab_size * emb,
        "LLM layers + norm": c.select_layer * layer + emb,
        "VLLN": 2 * emb,
        "state encoder": slots * ((c.max_state_dim + 1) * hid + (hid + 1) * dim),
        "action encoder": slots * ((c.max_action_dim + 1) * dim + (2 * dim + 1) * dim + (dim + 1) * dim),
        "DiT": dit,
        "action decoder": slots * ((hid + 1) * hid + (hid + 1) * c.max_action_dim),
    }


def check_stored_params(config: Gr00tConfig, counted: Mapping[str, int], source: str) -> None:
    """Raise when a checkpoint's header counts (``inspect`` components) differ from ``stored_params``."""
    expected = stored_params(config)
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

    config: Gr00tConfig
    workload: Workload
    precisions: dict[str, str]  # graph kind -> precision
    items: dict[str, list[WorkItem]] = field(default_factory=dict)  # side -> items
    notes: list[str] = field(default_factory=list)

    # --------------------------------------------------------------- building
    @classmethod
    def build(cls, config: Gr00tConfig, workload: Workload, precisions: Mapping[str, str] | str) -> Roofline:
        if isinstance(precisions, str):
            precisions = dict.fromkeys(GRAPH_KINDS, precisions)
        unknown = {p for p in precisions.values() if p not in PRECISIONS}
        if unknown:
            raise Gr00tTrtError(f"roofline: unknown precision {sorted(unknown)[0]!r} — expected one of: {', '.join(PRECISIONS)}")
        missing = [k for k in GRAPH_KINDS if k not in precisions]
        if missing:
            raise Gr00tTrtError(f"roofline: no precision for graph kind(s) {', '.join(missing)}")
        return cls(config, workload, dict(precisions), {side: count_work(config, workload, side) for side in SIDES})

    # --------------------------------------------------------------- sums
    def precision(self, item: WorkItem) -> str:
        precision = self.precisions[item.graph]
        # the int8 plan keeps the same backbone GEMMs as the fp8 one (int8_plan.py)
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
