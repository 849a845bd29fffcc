"""Action-head benchmark: our five exported graphs on ONNX Runtime CPU vs. the unoptimised PyTorch reference.

For one preset (``small`` or ``full`` N1.6 sizes, random weights, fp32, batch 1, one embodiment) and each
backbone sequence length S this script reports, per control step (N denoising steps):

* **weights read**: parameters each side actually reads (embodiment-specific weights: one embodiment's
  slice; tables: the rows used), in parameters and in bytes at fp32 and at bf16/fp16;
* **FLOPs**: 2·m·n·k per GEMM plus the attention score and value matmuls (element-wise work is ignored);
* **latency**: ``Gr00tActionHead.reference_denoise`` in PyTorch vs. the five graphs chained exactly as the
  runtime chains them (``OrtBackend`` sessions with the product's session options, buffers bound once by
  I/O binding, ``dit_context`` program + the ``state_encoder`` / N × (``action_encoder`` → ``dit`` →
  ``action_decoder``) program), interleaved in the same process with the same thread count, median of
  the quiet rounds (other processes < 0.2 cores) after warm-up; plus a third side, ``ours_torch`` (the same
  five graph modules in PyTorch eager), that splits the speed-up into graph restructuring (same engine)
  and ONNX Runtime vs PyTorch; plus a per-graph / per-component breakdown;
* **parity**: relative L2 between the two action chunks (same noise), so the two sides provably compute
  the same thing;
* the speed-up predicted from FLOPs, from bytes and from a roofline built on this machine's measured
  GEMM rate and memory bandwidth, next to the measured one.

Results go to ``<out>.json`` and ``<out>.md`` with the machine details. See benchmarks/README.md.

    python benchmarks/action_head.py --preset small --seq-len 141 256 --ort-profile
    python benchmarks/action_head.py --preset full --seq-len 141 256 --repeats 7 --ort-profile
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import logging
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch

from gr00t_trt.bench.machine import CpuMeter, rss_bytes
from gr00t_trt.bench.machine import load_average as package_load_average
from gr00t_trt.bench.machine import machine_info as package_machine_info
from gr00t_trt.contract import dataflow
from gr00t_trt.contract.manifest import load_manifest
from gr00t_trt.export.action_head_graphs import action_head_graph_modules
from gr00t_trt.export.head_only import export_action_head
from gr00t_trt.families.n16.contract import ACTION_HEAD_KINDS, CONTRACT, GRAPH_SPECS
from gr00t_trt.families.n16.presets import preset_config
from gr00t_trt.families.n16.processing.modality import BUILTIN_EMBODIMENT_IDS
from gr00t_trt.model.action_head import Gr00tActionHead, dit_block_kinds
from gr00t_trt.model.synthetic import init_synthetic_
from gr00t_trt.runtime.buffers import pad_right, padded_length
from gr00t_trt.runtime.ort_backend import OrtBackend
from gr00t_trt.runtime.pipeline import HeadInputs, Pipeline

REPO = Path(__file__).resolve().parents[1]
#: one 252x336 camera: 252·336/784 = 108 image tokens, wrapped in 7 tag tokens
IMAGE_TOKENS_PER_CAMERA = 108
TAGS_PER_CAMERA = 7
#: system prompt / chat template tokens before the images
PROMPT_TOKENS = 16


# ============================================================================================ machine
def machine_info() -> dict:
    """The package's machine header (gr00t_trt.bench.machine) in this script's result format, plus torch."""
    info = package_machine_info()
    git = info.get("git") or {}
    ram = info.get("ram_bytes")
    return {
        "cpu": info["cpu"],
        "cpu_flags": info["cpu_flags"],
        "logical_cores": info["logical_cores"],
        "ram_gib": round(ram / 2**30, 1) if ram else None,
        "os": info["os"],
        "python": info["python"],
        "torch": torch.__version__,
        "torch_parallel": torch.__config__.parallel_info().splitlines()[-1].strip(),
        "onnxruntime": info["versions"].get("onnxruntime"),
        "onnx": info["versions"].get("onnx"),
        "numpy": np.__version__,
        "git_commit": git.get("commit"),
        "git_dirty": git.get("dirty"),
    }


def load_average() -> list[float]:
    return package_load_average() or []


def rss_gib() -> float:
    rss = rss_bytes()
    return round(rss / 2**30, 2) if rss else float("nan")


def foreign_load(seconds: float = 2.0) -> float:
    """Cores used by other processes over the next ``seconds`` (this process sleeps meanwhile)."""
    meter = CpuMeter()
    meter.start()
    time.sleep(seconds)
    return meter.foreign_cores()


def wait_until_quiet(max_wait_s: float, threshold: float = 0.15) -> float:
    """Sleep until other processes use < ``threshold`` cores for 3 s in a row (or ``max_wait_s`` passes);
    returns the last foreign load seen."""
    deadline = time.perf_counter() + max_wait_s
    load = foreign_load(3.0)
    while load >= threshold and time.perf_counter() < deadline:
        log(f"  other processes use {load:.2f} cores — waiting for a quiet moment ...")
        time.sleep(10)
        load = foreign_load(3.0)
    return load


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ============================================================================================ inputs
def masks_for(seq_len: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(image_mask, attention_mask) bool [1, S] and the number of cameras: PROMPT_TOKENS prompt tokens, then
    as many 252x336 cameras (7 tags + 108 image tokens each) as fit while leaving ≥ 8 instruction tokens,
    then the instruction. S = 141 → one camera (16 + 115 + 10), S = 256 → two cameras (16 + 230 + 10)."""
    per_camera = IMAGE_TOKENS_PER_CAMERA + TAGS_PER_CAMERA
    cameras = max(0, (seq_len - PROMPT_TOKENS - 8) // per_camera)
    image = torch.zeros(seq_len, dtype=torch.bool)
    pos = PROMPT_TOKENS
    for _ in range(cameras):
        pos += 4  # "<image k>", newline, "<img>" … (tags are text tokens for the DiT)
        image[pos : pos + IMAGE_TOKENS_PER_CAMERA] = True
        pos += IMAGE_TOKENS_PER_CAMERA + TAGS_PER_CAMERA - 4
    attention = torch.ones(seq_len, dtype=torch.bool)  # batch 1: no padding
    return image[None], attention[None], cameras


@dataclass
class Inputs:
    seq_len: int
    cameras: int
    features: torch.Tensor  # [1, S, E]
    image_mask: torch.Tensor
    attention_mask: torch.Tensor
    state: torch.Tensor  # [1, 1, Ds]
    embodiment_id: torch.Tensor  # [1] the checkpoint id (reference)
    noise: torch.Tensor  # [1, H, Da]


def make_inputs(config, seq_len: int, embodiment: int, seed: int) -> Inputs:
    g = torch.Generator().manual_seed(seed)
    image_mask, attention_mask, cameras = masks_for(seq_len)
    return Inputs(
        seq_len, cameras,
        torch.randn(1, seq_len, config.backbone_embedding_dim, generator=g),
        image_mask, attention_mask,
        torch.randn(1, 1, config.max_state_dim, generator=g),
        torch.tensor([embodiment], dtype=torch.int64),
        torch.randn(1, config.action_horizon, config.max_action_dim, generator=g),
    )


# ============================================================================================ accounting
@dataclass
class Item:
    """One kind of work in a control step: weights read and FLOPs per execution, executions per step."""

    side: str  # "reference" | "ours"
    where: str  # graph (ours) or module (reference)
    what: str
    params: int  # weights read per execution
    flops: int  # per execution
    times: int  # executions per control step
    dit: bool  # part of the DiT (for the DiT-only ratio)
    rows: str = "H"  # GEMM rows m: "H" (≈ H+1 action/state tokens), "S" (backbone tokens) or "B" (1: a GEMV)


def linear_params(linear: torch.nn.Linear) -> int:
    return linear.weight.numel() + (linear.bias.numel() if linear.bias is not None else 0)


def account(head: Gr00tActionHead, wrappers: dict, seq_len: int, ours_seq_len: int | None = None) -> list[Item]:
    """Every weight read and FLOP of one control step, for the reference and for our graphs, from the real
    modules' shapes (reference: the head; ours: the graph wrappers that were exported)."""
    c = head.config
    n = c.num_inference_timesteps
    h, tokens = c.action_horizon, c.action_horizon + 1  # the DiT sees state + H action tokens
    dim, s = c.input_embedding_dim, seq_len
    kinds = dit_block_kinds(c)
    dit = head.model
    items: list[Item] = []

    def add(side, where, what, params, flops, times, is_dit=False, rows="H"):
        items.append(Item(side, where, what, int(params), int(flops), int(times), is_dit, rows))

    def csl(layer) -> tuple[int, int, int]:
        """(params of one embodiment's slice, in, out) of a CategorySpecificLinear."""
        _, fan_in, fan_out = layer.W.shape
        return fan_in * fan_out + fan_out, fan_in, fan_out

    # ---------------------------------------------------------------- reference (reference_denoise)
    R = "reference"
    add(R, "vlln", "VLLN LayerNorm(E) affine", linear_params(head.vlln), 0, 1)
    for name in ("layer1", "layer2"):
        p, i, o = csl(getattr(head.state_encoder, name))
        add(R, "state_encoder", f"{name}[e] {i}→{o}", p, 2 * 1 * i * o, 1, rows="B")
    for name in ("W1", "W2", "W3"):
        p, i, o = csl(getattr(head.action_encoder, name))
        add(R, "action_encoder", f"{name}[e] {i}→{o}", p, 2 * h * i * o, n)
    add(R, "action_encoder", f"position_embedding rows 0..{h - 1}", h * dim, 0, n)
    temb = dit.timestep_encoder.timestep_embedder
    add(R, "dit", "timestep MLP (linear_1, linear_2), m = B", linear_params(temb.linear_1) + linear_params(temb.linear_2),
        2 * (temb.linear_1.in_features * temb.linear_1.out_features + temb.linear_2.in_features * temb.linear_2.out_features),
        n, True, rows="B")
    mod = [b.norm1.linear for b in dit.transformer_blocks]
    add(R, "dit", f"AdaLN modulation linears ×{len(mod)}, m = B", sum(map(linear_params, mod)),
        sum(2 * m.in_features * m.out_features for m in mod), n, True, rows="B")
    qo = [lin for b in dit.transformer_blocks for lin in (b.attn1.to_q, b.attn1.to_out[0])]
    add(R, "dit", f"to_q + to_out ×{len(dit.transformer_blocks)}", sum(map(linear_params, qo)),
        sum(2 * tokens * m.in_features * m.out_features for m in qo), n, True)
    ff = [lin for b in dit.transformer_blocks for lin in (b.ff.net[0].proj, b.ff.net[2])]
    add(R, "dit", f"feed-forward ×{len(dit.transformer_blocks)}", sum(map(linear_params, ff)),
        sum(2 * tokens * m.in_features * m.out_features for m in ff), n, True)
    self_kv = [lin for b, k in zip(dit.transformer_blocks, kinds, strict=True) if k == "self" for lin in (b.attn1.to_k, b.attn1.to_v)]
    add(R, "dit", f"self-attn to_k/to_v ×{len(self_kv) // 2}", sum(map(linear_params, self_kv)),
        sum(2 * tokens * m.in_features * m.out_features for m in self_kv), n, True)
    cross_kv = [lin for b, k in zip(dit.transformer_blocks, kinds, strict=True) if k != "self" for lin in (b.attn1.to_k, b.attn1.to_v)]
    add(R, "dit", f"cross-attn to_k/to_v ×{len(cross_kv) // 2} (on S = {s} tokens)", sum(map(linear_params, cross_kv)),
        sum(2 * s * m.in_features * m.out_features for m in cross_kv), n, True, rows="S")
    n_self, n_cross = kinds.count("self"), len(kinds) - kinds.count("self")
    attn_flops = n_self * 2 * 2 * tokens * tokens * dim + n_cross * 2 * 2 * tokens * s * dim
    add(R, "dit", "attention QKᵀ and PV", 0, attn_flops, n, True)
    add(R, "dit", "proj_out_1 (output modulation), m = B", linear_params(dit.proj_out_1),
        2 * dit.proj_out_1.in_features * dit.proj_out_1.out_features, n, True, rows="B")
    add(R, "dit", f"proj_out_2 on {tokens} tokens", linear_params(dit.proj_out_2),
        2 * tokens * dit.proj_out_2.in_features * dit.proj_out_2.out_features, n, True)
    for name in ("layer1", "layer2"):
        p, i, o = csl(getattr(head.action_decoder, name))
        add(R, "action_decoder", f"{name}[e] {i}→{o} on {tokens} tokens", p, 2 * tokens * i * o, n)

    # ---------------------------------------------------------------- ours (the exported wrappers)
    ours_ = "ours"
    s = ours_seq_len or seq_len  # S the graphs run at (padded up to the bucket, if any)
    attn_flops = n_self * 2 * 2 * tokens * tokens * dim + n_cross * 2 * 2 * tokens * s * dim
    ctx, se, ae, dg, ad = (wrappers[k] for k in ACTION_HEAD_KINDS)
    add(ours_, "dit_context", "VLLN LayerNorm(E) affine", ctx.vlln.weight.numel() + ctx.vlln.bias.numel(), 0, 1)
    add(ours_, "dit_context", f"stacked cross to_k/to_v {ctx.to_k.in_features}→{ctx.to_k.out_features} ×2 (S = {s})",
        linear_params(ctx.to_k) + linear_params(ctx.to_v),
        2 * s * (ctx.to_k.in_features * ctx.to_k.out_features + ctx.to_v.in_features * ctx.to_v.out_features), 1, True,
        rows="S")
    for name in ("layer1", "layer2"):
        p, i, o = csl(getattr(se.state_encoder, name))
        add(ours_, "state_encoder", f"{name} {i}→{o}", p, 2 * 1 * i * o, 1, rows="B")
    p, i, o = csl(ae.W1)
    add(ours_, "action_encoder", f"W1 {i}→{o}", p, 2 * h * i * o, n)
    _, i, o = ae.W2_action.shape
    add(ours_, "action_encoder", f"W2 action half {i}→{o} (no bias: folded into the table)", i * o, 2 * h * i * o, n)
    add(ours_, "action_encoder", "W2 time-half table: 1 row (PE(τ_k)·W2_t + b2)", ae.time_table.shape[-1], 0, n)
    p, i, o = csl(ae.W3)
    add(ours_, "action_encoder", f"W3 {i}→{o}", p, 2 * h * i * o, n)
    add(ours_, "action_encoder", f"position_embedding rows 0..{h - 1}", ae.position_embedding.numel(), 0, n)
    norm1_rows = dg.norm1_modulation[0].numel()  # [layers, 2, C] of one step
    out_rows = dg.output_modulation[0].numel()
    add(ours_, "dit", "AdaLN + output modulation tables: 1 step's rows", norm1_rows + out_rows, 0, n, True)
    blocks = list(dg.transformer_blocks)
    qo = [lin for b in blocks for lin in (b.to_q, b.to_out)]
    add(ours_, "dit", f"to_q + to_out ×{len(blocks)}", sum(map(linear_params, qo)),
        sum(2 * tokens * m.in_features * m.out_features for m in qo), n, True)
    ff = [lin for b in blocks for lin in (b.ff_proj, b.ff_out)]
    add(ours_, "dit", f"feed-forward ×{len(blocks)}", sum(map(linear_params, ff)),
        sum(2 * tokens * m.in_features * m.out_features for m in ff), n, True)
    self_kv = [lin for b in blocks if not b.cross for lin in (b.to_k, b.to_v)]
    add(ours_, "dit", f"self-attn to_k/to_v ×{len(self_kv) // 2}", sum(map(linear_params, self_kv)),
        sum(2 * tokens * m.in_features * m.out_features for m in self_kv), n, True)
    add(ours_, "dit", "attention QKᵀ and PV", 0, attn_flops, n, True)
    add(ours_, "dit", f"proj_out_2 on {h} action tokens", linear_params(dg.proj_out_2),
        2 * h * dg.proj_out_2.in_features * dg.proj_out_2.out_features, n, True)
    for name in ("layer1", "layer2"):
        p, i, o = csl(getattr(ad.action_decoder, name))
        add(ours_, "action_decoder", f"{name} {i}→{o} on {h} tokens", p, 2 * h * i * o, n)
    return items


def totals(items: list[Item], side: str, dit_only: bool = False, per_denoising_step: bool = False) -> dict:
    sel = [it for it in items if it.side == side and (it.dit or not dit_only)]
    if per_denoising_step:  # one denoising step's DiT (ours: the dit graph; its K/V come from dit_context)
        sel = [it for it in sel if it.where == "dit"]
        params = sum(it.params for it in sel)
        flops = sum(it.flops for it in sel)
    else:
        params = sum(it.params * it.times for it in sel)
        flops = sum(it.flops * it.times for it in sel)
    return {"params": params, "bytes_fp32": 4 * params, "bytes_bf16": 2 * params, "flops": flops}


def onnx_initializer_params(folder: Path, graph: str) -> int:
    """Float parameters stored in one exported graph (initializers + float Constant tensors)."""
    import onnx

    model = onnx.load(str(folder / f"{graph}.onnx"), load_external_data=False)
    total = 0
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}
    for init in model.graph.initializer:
        if init.data_type in floats:
            total += int(np.prod(init.dims, dtype=np.int64))
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type in floats:
                    total += int(np.prod(attr.t.dims, dtype=np.int64))
    return total


# ============================================================================================ export
def export_graphs(head, config, folder: Path, slots: list[int], max_seq_len: int) -> None:
    """The product's action-head export (graphs + manifest), with progress lines."""
    started = {}

    def progress(name: str, status: str) -> None:
        if status.startswith("exporting"):
            started[name] = time.perf_counter()
        elif status.startswith("done"):
            size = sum(p.stat().st_size for p in folder.parent.glob(f".{folder.name}*/{name}.onnx*")) / 2**20
            log(f"  exported {name:15s} in {time.perf_counter() - started[name]:6.1f}s ({size:8.1f} MiB, RSS {rss_gib()} GiB)")
            gc.collect()

    export_action_head(head, config, folder, embodiment_slots=slots, max_seq_len=max_seq_len, progress=progress)


def _code_stamp() -> str:
    """Hash of the export code, so a kept export folder is reused only while the wrappers are unchanged."""
    import hashlib

    h = hashlib.sha256()
    for path in sorted((REPO / "gr00t_trt" / "export").glob("*.py")) + [REPO / "gr00t_trt" / "model" / "action_head.py"]:
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


# ============================================================================================ ORT side
class VariantBackend(OrtBackend):
    """OrtBackend whose session options are the product's plus benchmark-only overrides (for experiments;
    the headline numbers always use the product's options unchanged)."""

    def __init__(self, *, overrides: dict[str, str] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.overrides = dict(overrides or {})

    def session_options(self, precision: str):
        self._ort.set_default_logger_severity(3)  # overriding an entry is logged as a warning otherwise
        options = super().session_options(precision)
        for key, value in self.overrides.items():
            options.add_session_config_entry(key, value)
        return options


class OursRunner:
    """The action head of one shape bucket through the product's runtime: ``Pipeline.run`` from given
    backbone features (the ``dit_context`` sub-chain of the dataflow), buffers bound once per bucket."""

    def __init__(self, backend: OrtBackend, folder: Path, bucket: int):
        self.pipeline = Pipeline(load_manifest(folder), folder, backend, bucket=bucket)

    def fill(self, inputs: Inputs) -> None:
        self.head = HeadInputs(backbone_features=inputs.features.numpy(), attention_mask=inputs.attention_mask.numpy(),
                               image_mask=inputs.image_mask.numpy(), state=inputs.state.numpy(),
                               embodiment_id=inputs.embodiment_id.numpy())
        self.noise = inputs.noise.numpy()

    def run(self) -> np.ndarray:
        return self.pipeline.run(self.head, self.noise, start="dit_context")

    def graph_timings(self, repeats: int) -> dict[str, float]:
        """Median ms per control step of each graph kind, each graph run alone along the dataflow (the
        runtime's slow path: fresh arrays per call, so a little slower than inside the hot path)."""
        samples: dict[str, list[float]] = {}
        run = self.pipeline.graph_runner()
        pipe, head = self.pipeline, self.head

        def timed(kind, name, feeds):
            t0 = time.perf_counter()
            out = run(kind, name, feeds)
            per[kind] = per.get(kind, 0.0) + (time.perf_counter() - t0) * 1e3
            return out

        seq = padded_length(head.backbone_features.shape[1], pipe.bucket)
        features = np.zeros((1, seq, head.backbone_features.shape[2]), np.float32)
        masks = [np.zeros((1, seq), bool) for _ in range(2)]
        features[:, : head.backbone_features.shape[1]] = head.backbone_features
        pad_right(masks[0], head.attention_mask, False)
        pad_right(masks[1], head.image_mask, False)
        values = {"backbone_features": features, "attention_mask": masks[0], "image_mask": masks[1],
                  "state": head.state, "embodiment_id": pipe.slots(head.embodiment_id), dataflow.CARRY_START: self.noise}
        for _ in range(repeats):
            per: dict[str, float] = {}
            CONTRACT.evaluate(timed, values, steps=pipe.manifest.steps, start="dit_context")
            for kind, ms in per.items():
                samples.setdefault(kind, []).append(ms)
        return {kind: statistics.median(v) for kind, v in samples.items()}

    def close(self) -> None:
        self.pipeline.close()


def ort_op_profile(folder: Path, config, x: Inputs, bucket: int, threads: int, runs: int = 2) -> dict:
    """ms per control step of each op type in each graph (ONNX Runtime's profiler through the backend's
    ``profile_dir``, ``runs`` control steps after one warm-up; profiling adds a little overhead)."""
    import collections

    prof_dir = Path(tempfile.mkdtemp(prefix="gr00t_bench_prof_"))
    backend = OrtBackend(device="cpu", threads=threads, profile_dir=prof_dir)
    try:
        runner = OursRunner(backend, folder, bucket)
        runner.fill(x)
        runner.run()
        for _ in range(runs):  # the warm-up run is in the trace too: count only the last ``runs`` control steps
            runner.run()
        traces = backend.end_profiling()
        out = {}
        for kind in ACTION_HEAD_KINDS:
            events = json.loads(traces[kind].read_text())
            runs_seen = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
            per_step = config.num_inference_timesteps if CONTRACT.stages[kind].per_step else 1
            start = runs_seen[-runs * per_step]["ts"]
            per_op: collections.Counter = collections.Counter()
            for e in events:
                if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= start:
                    per_op[e["args"]["op_name"]] += e["dur"] / 1e3 / runs
            out[kind] = {op: round(ms, 2) for op, ms in per_op.most_common()}
        runner.close()
        return out
    finally:
        shutil.rmtree(prof_dir, ignore_errors=True)


# ============================================================================================ reference side
def reference_run(head: Gr00tActionHead, x: Inputs) -> torch.Tensor:
    with torch.inference_mode():
        return head.reference_denoise(x.features, x.image_mask, x.attention_mask, x.state, x.embodiment_id, x.noise)


def ours_torch_run(wrappers: dict, x: Inputs, steps: int) -> torch.Tensor:
    """The same five graph modules that were exported, chained by the same dataflow, in PyTorch eager:
    separates what the graph restructuring saves (reference → this) from what ONNX Runtime adds (this → ours)."""

    def run(kind, name, feeds):
        outputs = wrappers[kind](*(torch.as_tensor(feeds[t.name]) for t in GRAPH_SPECS[kind].inputs))
        outputs = (outputs,) if isinstance(outputs, torch.Tensor) else outputs
        return dict(zip(GRAPH_SPECS[kind].output_names, outputs, strict=True))

    values = {"backbone_features": x.features, "image_mask": x.image_mask, "attention_mask": x.attention_mask,
              "state": x.state, "embodiment_id": torch.zeros(1, dtype=torch.int64), dataflow.CARRY_START: x.noise}
    with torch.inference_mode():
        actions = CONTRACT.evaluate(run, values, steps=steps, start="dit_context")[dataflow.CARRIED_INPUT]
    return actions[-1] if actions else x.noise


def reference_breakdown(head: Gr00tActionHead, x: Inputs, repeats: int) -> dict[str, float]:
    """Median ms per control step of the reference's parts, each timed alone with the reference's own
    modules on the reference's own intermediates (sums differ slightly from the end-to-end time)."""
    c = head.config
    n = c.num_inference_timesteps
    dit = head.model
    kinds = dit_block_kinds(c)
    samples: dict[str, list[float]] = {}

    def timed(label: str, fn, times: int = 1):
        t0 = time.perf_counter()
        for _ in range(times):
            out = fn()
        samples.setdefault(label, []).append((time.perf_counter() - t0) * 1e3)
        return out

    cross = [b for b, k in zip(dit.transformer_blocks, kinds, strict=True) if k != "self"]
    with torch.inference_mode():
        vl = head.encode_context(x.features)
        t = head.timestep(1, 1)
        sa = torch.randn(1, c.action_horizon + 1, c.input_embedding_dim)
        dit_out = torch.randn(1, c.action_horizon + 1, c.hidden_size)

        def conditioning():
            temb = dit.timestep_encoder(t)
            mods = [b.norm1.modulation(temb) for b in dit.transformer_blocks]
            return mods, dit.proj_out_1(torch.nn.functional.silu(temb))

        parts = {
            "vlln + state_encoder": (lambda: (head.encode_context(x.features),
                                              head.encode_state(x.state, x.embodiment_id)), 1),
            "action_encoder (+pos emb) ×N": (lambda: head.action_encoder(x.noise, t, x.embodiment_id), n),
            "dit: timestep MLP + AdaLN/output modulation ×N": (conditioning, n),
            "dit: cross-attn K/V projections ×N": (lambda: [(b.attn1.to_k(vl), b.attn1.to_v(vl)) for b in cross], n),
            "dit: whole forward ×N": (lambda: dit(sa, vl, t, x.image_mask, x.attention_mask), n),
            "action_decoder ×N": (lambda: head.action_decoder(dit_out, x.embodiment_id), n),
        }
        for _ in range(repeats):
            for label, (fn, times) in parts.items():
                timed(label, fn, times)
    med = {k: statistics.median(v) for k, v in samples.items()}
    med["dit: rest (q/out/ff/self K,V/attention/norms) ×N"] = (
        med["dit: whole forward ×N"] - med["dit: timestep MLP + AdaLN/output modulation ×N"]
        - med["dit: cross-attn K/V projections ×N"])
    return med


# ============================================================================================ roofline
def machine_rates(config, threads: int, seq_len: int) -> dict:
    """This machine's fp32 GEMM rates on the DiT feed-forward shape (C → 4C, weights laid out as the model
    holds them) at m = H+1 and m = S rows, for torch (F.linear) and ONNX Runtime (MatMul + Add on a constant
    weight, the product's session options), and the bandwidth of a GEMV streaming weights far larger than
    the caches (the regime of the m = B = 1 modulation linears). Best of 3 batches each."""
    import torch.nn.functional as F

    c = config
    k, n = c.input_embedding_dim, 4 * c.input_embedding_dim
    w = torch.randn(n, k) * k**-0.5
    bias = torch.randn(n) * 0.02
    out = {"gemm_shape": f"m × {k} → {n}"}

    def best_rate(fn, flops: float, reps: int) -> float:
        for _ in range(2):
            fn()
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            best = min(best, (time.perf_counter() - t0) / reps)
        return flops / best / 1e9

    sess = _ort_linear_session(w.t().contiguous().numpy(), bias.numpy(), threads)
    for tag, m in (("H", c.action_horizon + 1), ("S", seq_len)):
        a = torch.randn(1, m, k)
        an = a.numpy()
        flops = 2 * m * k * n
        with torch.inference_mode():
            out[f"torch_gemm_gflops_{tag}"] = best_rate(lambda a=a: F.linear(a, w, bias), flops, 10)
        out[f"ort_gemm_gflops_{tag}"] = best_rate(lambda an=an: sess.run(None, {"x": an}), flops, 10)
        out[f"m_{tag}"] = m
    mats = [torch.randn(3072, 1536) for _ in range(14)]  # 14 × 18.9 MB: the full-size AdaLN linear shape
    v = torch.randn(1, 1536)
    with torch.inference_mode():
        out["gemv_weight_bandwidth_gbs"] = best_rate(lambda: [F.linear(v, mat) for mat in mats],
                                                     sum(mat.numel() * 4 for mat in mats), 2)
    return out


def _ort_linear_session(weight_kn: np.ndarray, bias: np.ndarray, threads: int):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    k, n = weight_kn.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])], "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "m", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "m", n])],
        [numpy_helper.from_array(weight_kn, "w"), numpy_helper.from_array(bias, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    backend = OrtBackend(device="cpu", threads=threads)
    backend.activate()
    return ort.InferenceSession(model.SerializeToString(), backend.session_options("fp32"),
                                providers=["CPUExecutionProvider"])


def roofline_ms(items: list[Item], side: str, rates: dict, engine: str) -> float:
    """Σ over the items of max(FLOPs / GEMM rate at the item's row count, weight bytes / GEMV bandwidth),
    fp32, per control step; ``engine`` ("torch" | "ort") picks the GEMM rates."""
    bw = rates["gemv_weight_bandwidth_gbs"] * 1e9
    total = 0.0
    for it in items:
        if it.side != side:
            continue
        peak = rates[f"{engine}_gemm_gflops_{'S' if it.rows == 'S' else 'H'}"] * 1e9
        total += max(it.flops / peak, 4 * it.params / bw) * it.times
    return total * 1e3


# ============================================================================================ main
SIDES = ("reference", "ours_torch", "ours")
SIDE_LABELS = {
    "reference": "reference: Gr00tActionHead.reference_denoise, PyTorch eager",
    "ours_torch": "our five graph modules in PyTorch eager (same engine as the reference)",
    "ours": "ours: the five exported graphs on ONNX Runtime CPU (product session options)",
}

VARIANTS = {
    # benchmark-only experiments on top of the product's session options (never the headline number)
    "spin": {"session.intra_op.allow_spinning": "1"},
}
VARIANTS_DOC = {"spin": "session.intra_op.allow_spinning = 1"}


@dataclass
class SeqResult:
    seq_len: int
    cameras: int
    image_tokens: int
    rounds: list = field(default_factory=list)  # [{"foreign_cores": f, "ms": {side: ms}}]
    variant_rounds: dict = field(default_factory=dict)  # name -> [{"ms", "foreign_cores"}]
    parity: dict = field(default_factory=dict)
    ours_graphs_ms: dict = field(default_factory=dict)
    ref_parts_ms: dict = field(default_factory=dict)
    breakdown_foreign_cores: float = float("nan")
    rates: dict = field(default_factory=dict)
    load_before: list = field(default_factory=list)
    load_after: list = field(default_factory=list)


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def summarise(rounds: list, threshold: float) -> dict:
    """Per side: median/min/max over the quiet rounds (other processes < threshold cores), and over all."""
    quiet = [r for r in rounds if r["foreign_cores"] < threshold]
    use = quiet if quiet else rounds
    out = {}
    for side in rounds[0]["ms"]:
        vals = [r["ms"][side] for r in use]
        every = [r["ms"][side] for r in rounds]
        out[side] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals),
                     "median_all_rounds": statistics.median(every), "n": len(vals)}
    return {"quiet_rounds": len(quiet), "rounds": len(rounds), "used": "quiet" if quiet else "all (no quiet round)",
            "sides": out}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=("small", "full"), default="small")
    p.add_argument("--seq-len", type=int, nargs="+", default=[141, 256], help="backbone sequence lengths S")
    p.add_argument("--steps", type=int, default=4, help="denoising steps N")
    p.add_argument("--embodiment", default="gr1", help="embodiment tag (its built-in id) or an integer id")
    p.add_argument("--repeats", type=int, default=None,
                   help="quiet timed rounds wanted per S (each round runs every side once; default 30 small, 5 full)")
    p.add_argument("--max-rounds", type=int, default=None, help="give up collecting quiet rounds after this many "
                   "(default 3 × repeats); the report then uses every round and says so")
    p.add_argument("--warmup", type=int, default=None, help="untimed rounds per S (default 5 small, 1 full)")
    p.add_argument("--quiet-threshold", type=float, default=0.2,
                   help="a round is quiet when other processes used fewer cores than this on average")
    p.add_argument("--wait-quiet", type=float, default=120, metavar="SECONDS",
                   help="before timing each S, wait up to SECONDS for other processes to go quiet")
    p.add_argument("--bucket", type=int, default=1,
                   help="pad S up to a multiple of this for our graphs, as the runtime does (Policy default 32; "
                        "default here 1 = exactly S; the reference always runs at exactly S)")
    p.add_argument("--threads", type=int, default=2, help="torch threads and ORT intra-op threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-ours-torch", action="store_true", help="skip timing our graph modules in PyTorch eager")
    p.add_argument("--variants", nargs="*", default=[], choices=sorted(VARIANTS),
                   help="also time benchmark-only ORT session-option variants (reported separately)")
    p.add_argument("--ort-profile", action="store_true",
                   help="finally profile our graphs with ONNX Runtime's profiler at the first S: ms per op type")
    p.add_argument("--breakdown-repeats", type=int, default=None, help="repeats of the per-graph/per-part timings")
    p.add_argument("--keep-onnx", type=Path, default=None,
                   help="export into this folder and keep it; a later run with the same settings reuses it")
    p.add_argument("--out", type=Path, default=None,
                   help="output stem (writes .json and .md); default benchmarks/results/action_head_<preset>")
    args = p.parse_args(argv)

    full = args.preset == "full"
    repeats = args.repeats or (5 if full else 30)
    max_rounds = args.max_rounds or 3 * repeats
    warmup = args.warmup if args.warmup is not None else (1 if full else 5)
    breakdown_repeats = args.breakdown_repeats or (2 if full else 10)
    out_stem = args.out or REPO / "benchmarks" / "results" / f"action_head_{args.preset}"
    embodiment = int(args.embodiment) if args.embodiment.isdigit() else BUILTIN_EMBODIMENT_IDS[args.embodiment]
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], REPO), *(argv or sys.argv[1:])])

    torch.set_num_threads(args.threads)
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)  # torchvision notes
    started = time.perf_counter()
    info = machine_info()
    log(f"{info['cpu']}, {info['logical_cores']} cores, {info['ram_gib']} GiB; load {load_average()}")

    from dataclasses import replace

    config = replace(preset_config(args.preset), num_inference_timesteps=args.steps)
    log(f"building the {args.preset} action head (fp32, random weights) ...")
    with torch.device("meta"):
        head = Gr00tActionHead(config)
    head = head.to_empty(device="cpu")
    init_synthetic_(head, args.seed, prefix="action_head.")
    head.eval().requires_grad_(False)
    total_params = sum(p.numel() for p in head.parameters())
    log(f"  {total_params:,} parameters ({total_params * 4 / 1e9:.2f} GB fp32), RSS {rss_gib()} GiB")

    slots = [embodiment]
    wrappers = action_head_graph_modules(head, slots)  # the DiT wrapper shares the head's weights
    accounts = {s: account(head, wrappers, s, padded_length(s, args.bucket)) for s in args.seq_len}

    tmp = Path(tempfile.mkdtemp(prefix="gr00t_bench_")) if args.keep_onnx is None else args.keep_onnx
    tmp.mkdir(parents=True, exist_ok=True)
    results: list[SeqResult] = []
    try:
        stamp = {"preset": args.preset, "seed": args.seed, "steps": args.steps, "embodiment": embodiment,
                 "torch": torch.__version__, "code": _code_stamp()}
        stamp_file = tmp / "benchmark_stamp.json"
        t_export = time.perf_counter()
        graphs = tmp / "action_head"
        if args.keep_onnx is not None and stamp_file.is_file() and json.loads(stamp_file.read_text()) == stamp:
            log(f"reusing the graphs exported earlier in {graphs} (same preset, seed, steps, embodiment, code)")
            export_s = None
        else:
            log(f"exporting the five graphs (embodiment id {embodiment} → slot 0) to {graphs} ...")
            stamp_file.unlink(missing_ok=True)
            shutil.rmtree(graphs, ignore_errors=True)
            export_graphs(head, config, graphs, slots, max_seq_len=max(512, *(padded_length(n, args.bucket) for n in args.seq_len)))
            stamp_file.write_text(json.dumps(stamp))
            export_s = time.perf_counter() - t_export
        onnx_params = {k: onnx_initializer_params(graphs, k) for k in ACTION_HEAD_KINDS}
        wrapper_params = {k: sum(t.numel() for t in (*m.parameters(), *m.buffers())) for k, m in wrappers.items()}
        if args.no_ours_torch:
            del wrappers
            wrappers = None
        gc.collect()

        backend = OrtBackend(device="cpu", threads=args.threads)
        backend.activate()
        variant_backends = {}
        for name in args.variants:
            vb = VariantBackend(device="cpu", threads=args.threads, overrides=VARIANTS[name])
            vb.activate()
            variant_backends[name] = vb
        gc.collect()
        log(f"sessions open, RSS {rss_gib()} GiB")

        for seq_len in args.seq_len:
            x = make_inputs(config, seq_len, embodiment, args.seed + seq_len)
            r = SeqResult(seq_len, x.cameras, int(x.image_mask.sum()))
            graph_seq = padded_length(seq_len, args.bucket)
            runners = {"ours": OursRunner(backend, graphs, args.bucket)}
            for name, vb in variant_backends.items():
                runners[f"ours_{name}"] = OursRunner(vb, graphs, args.bucket)
            for runner in runners.values():
                runner.fill(x)
            sides = {"reference": partial(reference_run, head, x)}
            if wrappers is not None:
                sides["ours_torch"] = partial(ours_torch_run, wrappers, x, config.num_inference_timesteps)
            sides["ours"] = runners["ours"].run
            variant_sides = {name: runner.run for name, runner in runners.items() if name != "ours"}

            log(f"S = {seq_len} ({x.cameras} camera(s), {r.image_tokens} image tokens; the graphs run at S = {graph_seq}): "
                f"parity and warm-up ×{warmup} ...")
            ref_out = reference_run(head, x).numpy().copy()
            for name, fn in {**sides, **variant_sides}.items():
                if name == "reference":
                    continue
                out = fn()
                out = np.array(out.numpy() if isinstance(out, torch.Tensor) else out, copy=True)
                r.parity[name] = {"rel_l2": rel_l2(out, ref_out), "max_abs": float(np.abs(out - ref_out).max())}
                log(f"  parity {name}: rel L2 {r.parity[name]['rel_l2']:.2e}, max |Δ| {r.parity[name]['max_abs']:.2e}")
            for _ in range(max(0, warmup - 1)):
                for fn in sides.values():
                    fn()

            if args.wait_quiet:
                wait_until_quiet(args.wait_quiet, args.quiet_threshold)
            r.load_before = load_average()
            meter = CpuMeter()
            meter.start()
            r.rates = machine_rates(config, args.threads, padded_length(seq_len, args.bucket))
            r.rates["other_processes_cores"] = meter.foreign_cores()
            log(f"  machine: fp32 GEMM GFLOP/s at m = {r.rates['m_H']} / {r.rates['m_S']}: torch "
                f"{r.rates['torch_gemm_gflops_H']:.0f} / {r.rates['torch_gemm_gflops_S']:.0f}, ORT "
                f"{r.rates['ort_gemm_gflops_H']:.0f} / {r.rates['ort_gemm_gflops_S']:.0f}; GEMV weight bandwidth "
                f"{r.rates['gemv_weight_bandwidth_gbs']:.1f} GB/s "
                f"(other processes {r.rates['other_processes_cores']:.2f} cores)")
            log(f"  timing until {repeats} quiet rounds (at most {max_rounds}), sides interleaved: {', '.join(sides)}")
            order = list(sides)
            quiet = 0
            while quiet < repeats and len(r.rounds) < max_rounds:
                meter.start()
                ms = {}
                for name in order:
                    t0 = time.perf_counter()
                    sides[name]()
                    ms[name] = (time.perf_counter() - t0) * 1e3
                foreign = meter.foreign_cores()
                quiet += foreign < args.quiet_threshold
                r.rounds.append({"foreign_cores": round(foreign, 3), "ms": {n: ms[n] for n in sides}})
                order = order[1:] + order[:1]  # rotate so no side always runs first
                if full or len(r.rounds) % 10 == 0:
                    log(f"    round {len(r.rounds)} ({quiet} quiet; other processes {foreign:.2f} cores): "
                        + ", ".join(f"{n} {v:.0f} ms" for n, v in ms.items()))
            if variant_sides:
                # spinning thread pools keep a core busy after each run, which would slow whatever runs next:
                # variants are timed in their own block, after the interleaved rounds, never amid them
                log(f"  timing benchmark-only variants ×{repeats}: {', '.join(variant_sides)}")
                for name, fn in variant_sides.items():
                    for _ in range(max(1, warmup)):
                        fn()
                    for _ in range(repeats):
                        meter.start()
                        t0 = time.perf_counter()
                        fn()
                        r.variant_rounds.setdefault(name, []).append(
                            {"ms": (time.perf_counter() - t0) * 1e3, "foreign_cores": round(meter.foreign_cores(), 3)})
                    time.sleep(0.5)
            summary = summarise(r.rounds, args.quiet_threshold)
            med = {n: v["median"] for n, v in summary["sides"].items()}
            log(f"  medians over {summary['used']} rounds: " + ", ".join(f"{n} {v:.1f} ms" for n, v in med.items())
                + f" → speed-up {med['reference'] / med['ours']:.3f}×")
            log(f"  breakdown ×{breakdown_repeats} ...")
            meter.start()
            r.ours_graphs_ms = runners["ours"].graph_timings(breakdown_repeats)
            r.ref_parts_ms = reference_breakdown(head, x, breakdown_repeats)
            r.breakdown_foreign_cores = meter.foreign_cores()
            r.load_after = load_average()
            results.append(r)
            for runner in runners.values():
                runner.close()
            del runners, sides
            gc.collect()
        backend.deactivate()
        for vb in variant_backends.values():
            vb.deactivate()
        gc.collect()
        op_profile = None
        if args.ort_profile:
            seq_len = args.seq_len[0]
            log(f"ONNX Runtime per-op profile at S = {seq_len} (separate sessions with profiling on) ...")
            op_profile = ort_op_profile(graphs, config, make_inputs(config, seq_len, embodiment, args.seed + seq_len),
                                        args.bucket, args.threads)
            op_profile["seq_len"] = seq_len
    finally:
        if args.keep_onnx is None:
            shutil.rmtree(tmp, ignore_errors=True)

    report = build_report(args, command, info, config, embodiment, total_params, accounts, results,
                          onnx_params, wrapper_params, export_s, repeats, warmup, time.perf_counter() - started)
    report["ort_op_profile"] = op_profile
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out_stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    Path(f"{out_stem}.md").write_text(render_markdown(report))
    log(f"wrote {out_stem}.json and {out_stem}.md ({time.perf_counter() - started:.0f}s in all)")
    print(render_markdown(report))
    return 0


# ============================================================================================ report
def build_report(args, command, info, config, embodiment, total_params, accounts, results,
                 onnx_params, wrapper_params, export_s, repeats, warmup, wall_s) -> dict:
    per_seq = []
    for r in results:
        items = accounts[r.seq_len]
        ref, ours = totals(items, "reference"), totals(items, "ours")
        ref_dit, ours_dit = totals(items, "reference", dit_only=True), totals(items, "ours", dit_only=True)
        ref_dit_step = totals(items, "reference", dit_only=True, per_denoising_step=True)
        ours_dit_step = totals(items, "ours", dit_only=True, per_denoising_step=True)
        summary = summarise(r.rounds, args.quiet_threshold)
        med = {n: v["median"] for n, v in summary["sides"].items()}
        roof_torch = {"reference_ms": roofline_ms(items, "reference", r.rates, "torch"),
                      "ours_ms": roofline_ms(items, "ours", r.rates, "torch")}
        roof_ort = {"reference_ms": roof_torch["reference_ms"],
                    "ours_ms": roofline_ms(items, "ours", r.rates, "ort")}
        speedup = {
            "measured": med["reference"] / med["ours"],
            "measured_min": summary["sides"]["reference"]["min"] / summary["sides"]["ours"]["min"],
            "predicted_from_flops": ref["flops"] / ours["flops"],
            "predicted_from_bytes": ref["params"] / ours["params"],
            "predicted_roofline_same_engine": roof_torch["reference_ms"] / roof_torch["ours_ms"],
            "predicted_roofline_torch_vs_ort_gemm": roof_ort["reference_ms"] / roof_ort["ours_ms"],
        }
        if "ours_torch" in med:
            speedup["measured_structural_same_engine"] = med["reference"] / med["ours_torch"]
            speedup["measured_engine_ort_vs_torch"] = med["ours_torch"] / med["ours"]
        variants = {}
        for name, rows in r.variant_rounds.items():
            vals = [row["ms"] for row in rows]
            variants[name] = {"median": statistics.median(vals), "min": min(vals), "rounds": rows,
                              "speedup_vs_reference": med["reference"] / statistics.median(vals)}
        per_seq.append({
            "seq_len": r.seq_len,
            "cameras": r.cameras,
            "image_tokens": r.image_tokens,
            "weights": {
                "reference": ref, "ours": ours,
                "ratio_action_head": ours["params"] / ref["params"],
                "dit_per_denoising_step": {"reference": ref_dit_step["params"], "ours": ours_dit_step["params"],
                                           "ratio": ours_dit_step["params"] / ref_dit_step["params"]},
                "dit_per_control_step": {"reference": ref_dit["params"], "ours": ours_dit["params"],
                                         "ratio": ours_dit["params"] / ref_dit["params"],
                                         "note": "ours includes the cross K/V projections read once in dit_context"},
            },
            "flops": {"reference": ref["flops"], "ours": ours["flops"], "ratio": ours["flops"] / ref["flops"],
                      "dit_reference": ref_dit["flops"], "dit_ours": ours_dit["flops"]},
            "latency_ms": summary,
            "speedup": speedup,
            "variants_benchmark_only": variants,
            "roofline_ms": {"same_engine_torch_gemm_rate": roof_torch, "torch_vs_ort_gemm_rate": roof_ort},
            "machine_rates": r.rates,
            "parity": r.parity,
            "breakdown_ms": {"ours_per_graph": r.ours_graphs_ms, "reference_parts": r.ref_parts_ms,
                             "other_processes_cores": r.breakdown_foreign_cores},
            "rounds": r.rounds,
            "items": [it.__dict__ for it in items],
            "load_average_before": r.load_before,
            "load_average_after": r.load_after,
        })
    return {
        "benchmark": "action_head",
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": command,
        "machine": info,
        "settings": {
            "preset": args.preset, "steps": config.num_inference_timesteps, "batch": 1, "dtype": "float32",
            "embodiment_id": embodiment, "threads": args.threads, "repeats": repeats, "warmup": warmup,
            "quiet_threshold_cores": args.quiet_threshold,
            "sides": SIDE_LABELS,
            "ort_session_options": "OrtBackend.session_options('fp32') (the product's), CPU EP",
            "ort_chaining": "OrtBackend programs over I/O-bound buffers, as runtime/pipeline.py",
            "bucket": (f"our ONNX graphs run at S padded up to a multiple of {args.bucket} (runtime right padding, "
                       "masked; FLOPs counted at the padded S); ours_torch and the reference run at exactly S"
                       if args.bucket > 1 else
                       "none: the graphs run at exactly S (Policy's default bucket 32 would pad 141 to 160)"),
        },
        "model": {"action_head_params": total_params, "onnx_float_params": onnx_params,
                  "wrapper_params_and_buffers": wrapper_params},
        "export_seconds": export_s,
        "wall_seconds": wall_s,
        "results": per_seq,
    }


def _g(x: float) -> str:
    return f"{x / 1e9:.3f} G"


def _gb(x: float) -> str:
    return f"{x / 1e9:.2f} GB"


def render_markdown(rep: dict) -> str:
    s, m = rep["settings"], rep["machine"]
    export = "reused a kept export" if rep["export_seconds"] is None else f"export took {rep['export_seconds']:.0f} s"
    lines = [
        f"# Action head: ONNX Runtime graphs vs. PyTorch reference — preset `{s['preset']}`",
        "",
        f"- date: {rep['date']}",
        f"- command: `{rep['command']}`",
        f"- machine: {m['cpu']}, {m['logical_cores']} logical cores, {m['ram_gib']} GiB RAM, flags "
        f"{' '.join(m['cpu_flags'])}; {m['os']}",
        f"- software: Python {m['python']}, torch {m['torch']} ({m['torch_parallel']}), onnxruntime {m['onnxruntime']}, "
        f"onnx {m['onnx']}, numpy {m['numpy']}; gr00t-trt {m['git_commit']}{' (dirty tree)' if m['git_dirty'] else ''}",
        f"- settings: fp32, batch 1, N = {s['steps']} denoising steps, embodiment id {s['embodiment_id']} "
        f"(sliced export, 1 slot), {s['threads']} threads on every side; {s['warmup']} warm-up round(s), then rounds "
        f"(each side once, order rotated) until {s['repeats']} quiet rounds (other processes < "
        f"{s['quiet_threshold_cores']} cores); latency = median over the quiet rounds; {s['bucket']}",
        f"- action head: {rep['model']['action_head_params']:,} parameters; {export}; whole run {rep['wall_seconds']:.0f} s",
        "",
        "Sides: " + "; ".join(f"`{k}` = {v}" for k, v in s["sides"].items()) + ".",
        "",
        "## Summary (per control step)",
        "",
        "| S | weights read: ref → ours (ratio) | DiT weights / denoising step (ratio) | GFLOP: ref → ours "
        "| reference ms | ours (ORT) ms | **speed-up** | predicted from FLOPs / bytes / roofline | "
        "ours_torch ms (structural speed-up) | ORT vs torch on our graphs | rel L2 | quiet rounds | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rep["results"]:
        w, f, lat, sp = r["weights"], r["flops"], r["latency_ms"], r["speedup"]
        d = w["dit_per_denoising_step"]
        sides = lat["sides"]
        ot = (f"{sides['ours_torch']['median']:.1f} ({sp['measured_structural_same_engine']:.2f}×)"
              if "ours_torch" in sides else "–")
        eng = f"{sp['measured_engine_ort_vs_torch']:.2f}×" if "ours_torch" in sides else "–"
        lines.append(
            f"| {r['seq_len']} | {_g(w['reference']['params'])} → {_g(w['ours']['params'])} ({w['ratio_action_head']:.3f}) "
            f"| {_g(d['reference'])} → {_g(d['ours'])} ({d['ratio']:.3f}) "
            f"| {f['reference'] / 1e9:.1f} → {f['ours'] / 1e9:.1f} | {sides['reference']['median']:.1f} "
            f"| {sides['ours']['median']:.1f} | **{sp['measured']:.2f}×** | {sp['predicted_from_flops']:.2f}× / "
            f"{sp['predicted_from_bytes']:.2f}× / {sp['predicted_roofline_same_engine']:.2f}× | {ot} | {eng} "
            f"| {r['parity']['ours']['rel_l2']:.1e} | {lat['quiet_rounds']}/{lat['rounds']} "
            f"| {r['load_average_before'][0]} → {r['load_average_after'][0]} |")
    lines += ["", "Targets (issue, full size): ≥ 1.35× at S = 141, ≥ 1.5× at S = 256.", ""]
    for r in rep["results"]:
        w = r["weights"]
        rates = r["machine_rates"]
        lines += [
            f"## S = {r['seq_len']} ({r['cameras']} camera(s), {r['image_tokens']} image tokens)",
            "",
            "### Latency per control step (ms)",
            "",
            f"Rounds: {r['latency_ms']['rounds']}, quiet: {r['latency_ms']['quiet_rounds']} (statistics over "
            f"{r['latency_ms']['used']}).",
            "",
            "| side | median | min | max | median of all rounds | rel L2 vs reference | max abs diff |",
            "|---|---|---|---|---|---|---|",
        ]
        for side, v in r["latency_ms"]["sides"].items():
            par = r["parity"].get(side)
            pr = f"{par['rel_l2']:.2e} | {par['max_abs']:.2e}" if par else "– | –"
            lines.append(f"| {side} | {v['median']:.1f} | {v['min']:.1f} | {v['max']:.1f} | {v['median_all_rounds']:.1f} | {pr} |")
        sp, roof = r["speedup"], r["roofline_ms"]
        lines += [
            "",
            f"Speed-up reference → ours: **{sp['measured']:.3f}×** measured (median; {sp['measured_min']:.3f}× on minima).",
        ]
        if "measured_structural_same_engine" in sp:
            lines.append(f"Of which: graph restructuring on the same engine (reference → ours_torch) "
                         f"{sp['measured_structural_same_engine']:.3f}×, ONNX Runtime vs PyTorch on the same graphs "
                         f"(ours_torch → ours) {sp['measured_engine_ort_vs_torch']:.3f}×.")
        for k, v in r["variants_benchmark_only"].items():
            lines.append(f"Benchmark-only ORT variant `{k}` ({VARIANTS_DOC[k.removeprefix('ours_')]}), timed alone after the rounds: "
                         f"median {v['median']:.1f} ms, {v['speedup_vs_reference']:.3f}× vs the reference (not the "
                         "product's options).")
        lines += [
            f"Predicted: {sp['predicted_from_flops']:.3f}× from FLOPs, {sp['predicted_from_bytes']:.3f}× from weight bytes, "
            f"{sp['predicted_roofline_same_engine']:.3f}× from a roofline with torch's measured rates on both sides "
            f"({roof['same_engine_torch_gemm_rate']['reference_ms']:.0f} → {roof['same_engine_torch_gemm_rate']['ours_ms']:.0f} ms; "
            "compare with reference → ours_torch), "
            f"{sp['predicted_roofline_torch_vs_ort_gemm']:.3f}× with torch's rates for the reference and ONNX Runtime's for "
            f"ours ({roof['torch_vs_ort_gemm_rate']['reference_ms']:.0f} → {roof['torch_vs_ort_gemm_rate']['ours_ms']:.0f} ms; "
            "compare with reference → ours). Roofline: Σ max(FLOPs / GEMM rate at the item's m, weight bytes / GEMV "
            "bandwidth).",
            f"Machine rates measured just before timing (best of 3): fp32 GEMM {rates['gemm_shape']} at m = {rates['m_H']} / "
            f"{rates['m_S']}: torch {rates['torch_gemm_gflops_H']:.0f} / {rates['torch_gemm_gflops_S']:.0f} GFLOP/s, "
            f"ONNX Runtime {rates['ort_gemm_gflops_H']:.0f} / {rates['ort_gemm_gflops_S']:.0f} GFLOP/s; weight-streaming GEMV "
            f"{rates['gemv_weight_bandwidth_gbs']:.1f} GB/s (other processes {rates['other_processes_cores']:.2f} cores).",
            "",
            "### Weights read and FLOPs per control step",
            "",
            "| | reference | ours | ours / ref |",
            "|---|---|---|---|",
            f"| parameters read, action head | {w['reference']['params']:,} | {w['ours']['params']:,} | "
            f"{w['ratio_action_head']:.3f} |",
            f"| bytes, fp32 | {_gb(w['reference']['bytes_fp32'])} | {_gb(w['ours']['bytes_fp32'])} | |",
            f"| bytes, bf16/fp16 | {_gb(w['reference']['bytes_bf16'])} | {_gb(w['ours']['bytes_bf16'])} | |",
            f"| DiT parameters per denoising step | {w['dit_per_denoising_step']['reference']:,} | "
            f"{w['dit_per_denoising_step']['ours']:,} | {w['dit_per_denoising_step']['ratio']:.3f} |",
            f"| DiT parameters per control step (ours: + K/V once in dit_context) | {w['dit_per_control_step']['reference']:,} | "
            f"{w['dit_per_control_step']['ours']:,} | {w['dit_per_control_step']['ratio']:.3f} |",
            f"| GFLOP, action head | {r['flops']['reference'] / 1e9:.2f} | {r['flops']['ours'] / 1e9:.2f} | "
            f"{r['flops']['ratio']:.3f} |",
            f"| GFLOP, DiT (ours: + K/V in dit_context) | {r['flops']['dit_reference'] / 1e9:.2f} | "
            f"{r['flops']['dit_ours'] / 1e9:.2f} | {r['flops']['dit_ours'] / r['flops']['dit_reference']:.3f} |",
            "",
            "| side | where | what | params / exec | execs | params / control step | GFLOP / control step |",
            "|---|---|---|---|---|---|---|",
        ]
        for it in r["items"]:
            lines.append(f"| {it['side']} | {it['where']} | {it['what']} | {it['params']:,} | {it['times']} | "
                         f"{it['params'] * it['times']:,} | {it['flops'] * it['times'] / 1e9:.3f} |")
        lines += [
            "",
            f"### Breakdown (each part timed alone, median ms per control step; other processes "
            f"{r['breakdown_ms']['other_processes_cores']:.2f} cores)",
            "",
            "| ours (ORT): graph | ms | | reference: part | ms |",
            "|---|---|---|---|---|",
        ]
        og = list(r["breakdown_ms"]["ours_per_graph"].items())
        rp = list(r["breakdown_ms"]["reference_parts"].items())
        for i in range(max(len(og), len(rp))):
            a = f"{og[i][0]} | {og[i][1]:.1f}" if i < len(og) else " | "
            b = f"{rp[i][0]} | {rp[i][1]:.1f}" if i < len(rp) else " | "
            lines.append(f"| {a} | | {b} |")
        lines.append("")
    prof = rep.get("ort_op_profile")
    if prof:
        lines += [
            f"## ONNX Runtime per-op profile of our graphs (S = {prof['seq_len']}, ms per control step, top ops)",
            "",
            "| graph | total | top op types |",
            "|---|---|---|",
        ]
        for kind in ACTION_HEAD_KINDS:
            ops = prof[kind]
            top = ", ".join(f"{op} {ms:.1f}" for op, ms in list(ops.items())[:7])
            lines.append(f"| {kind} | {sum(ops.values()):.1f} | {top} |")
        lines.append("")
    onnx_p, wrap_p = rep["model"]["onnx_float_params"], rep["model"]["wrapper_params_and_buffers"]
    lines += [
        "## Cross-check: float parameters stored in the exported graphs",
        "",
        "| graph | ONNX float initializers/constants | wrapper parameters + buffers |",
        "|---|---|---|",
        *(f"| {k} | {onnx_p[k]:,} | {wrap_p[k]:,} |" for k in onnx_p),
        "",
        "(Stored ≥ read: the tables hold every step's rows — and, for the action encoder, every kept embodiment's — "
        "of which one is read per execution.)",
        "",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
