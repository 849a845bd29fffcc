"""Which of GR00T N1.7's backbone GEMMs fp8 (or int8) can take: a per-layer sensitivity table and the plans.

N1.7's backbone output is read *before* the LLM's final RMSNorm (spec §3.6), RMS ≈ 3, while §7's bounds
(features mean abs ≤ 0.05, cosine ≥ 0.99 at fp8 and int8) were written for unit-scale features. verify
compares them through the family's feature view (``verification.parity.compare_features``: per-token
standardisation, what the action head's VLLN does first), and so does this script; the raw metrics are
reported beside it. Groups: one role of one decoder layer (q/k/v, which share one input quantiser;
o_proj; gate/up, also one input; down_proj; the two attention matmuls, fp8 only).

Quantisation is simulated in PyTorch, as ModelOpt's ONNX Q/DQ writes it (``export/quantize.py``): a per-tensor
activation scale from the max over the export's own synthetic calibration set (same seeds, sizes and
count), a per-output-channel weight scale; fp8: E4M3 round-to-nearest saturating at ±448, attention per-tensor
Q, K, softmax probabilities and V; int8: symmetric, round-to-nearest, ±127, Linear GEMMs only (int8 plans no
attention). The rest stays fp32 (ModelOpt's fp16 remainder is not simulated). Errors are ``verify``'s
"backbone alone" check: the wrapper on the fp32 chain's own inputs for each exported embodiment and seed,
over the real tokens, worst case over the cases. Plans are the ones an export can express: the exported
backbone's attention matmuls carry no layer path, so attention is planned in every layer or none.
``--smooth ALPHA`` first migrates activation outliers into the weights (SmoothQuant: per input channel
s = amax(X)^α / amax(W)^(1-α), X / s folded into the RMSNorm before q/k/v and gate/up, W · s).

    python benchmarks/n17_fp8_sensitivity.py CHECKPOINT --format fp8 --out benchmarks/results/n17_fp8_sensitivity_small
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import gr00t_trt.families.n17.backbone as n17_backbone
from gr00t_trt.base.files import write_atomic, write_json
from gr00t_trt.bench.machine import machine_info
from gr00t_trt.export.calibration import calibration_records, synthetic_calibration_set
from gr00t_trt.export.driver import DEFAULT_CAMERA_FRAMES
from gr00t_trt.export.examples import run_torch_graph
from gr00t_trt.families.registry import family_of_checkpoint
from gr00t_trt.processing.observations import synthetic_observation
from gr00t_trt.verification.parity import standardise

REPO = Path(__file__).resolve().parents[1]
FP8_MAX, INT8_MAX = 448.0, 127.0
#: the groups a decoder layer's GEMMs fall into (q/k/v and gate/up share their input quantiser)
ROLES: dict[str, tuple[str, ...]] = {
    "qkv": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"), "o_proj": ("self_attn.o_proj",),
    "gate_up": ("mlp.gate_proj", "mlp.up_proj"), "down_proj": ("mlp.down_proj",), "attention": (),
}
#: the fp8 bound of §7 (parity.THRESHOLDS["backbone"]["fp8"]) and the margin a chosen plan keeps under it
BOUND, TARGET = 0.05, 0.04


def fake_fp8(x: torch.Tensor, amax: torch.Tensor) -> torch.Tensor:
    """x through E4M3 at scale amax / 448 (saturating), back in x's dtype."""
    scale = torch.clamp(amax / FP8_MAX, min=1e-12)
    return torch.clamp(x / scale, -FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn).to(x.dtype) * scale


def fake_int8(x: torch.Tensor, amax: torch.Tensor) -> torch.Tensor:
    """x through symmetric int8 at scale amax / 127 (round to nearest, saturating), back in x's dtype."""
    scale = torch.clamp(amax / INT8_MAX, min=1e-12)
    return torch.clamp(torch.round(x / scale), -INT8_MAX, INT8_MAX) * scale


FAKE = {"fp8": fake_fp8, "int8": fake_int8}


class FakeQuant:
    """Max-calibrated fp8 or int8 quantisers on chosen GEMM groups of an N1.7 backbone wrapper (``N17BackboneGraph``)."""

    def __init__(self, graph: nn.Module, fmt: str = "fp8"):
        self.fake = FAKE[fmt]
        layers = graph.decoder.llm.layers
        self.norms = {i: (layer.input_layernorm, layer.post_attention_layernorm) for i, layer in enumerate(layers)}
        self.channel_amax: dict[str, torch.Tensor] = {}  # per input channel, for --smooth
        self.linears = {f"layers.{i}.{name}": m for i, layer in enumerate(layers)
                        for name, m in layer.named_modules() if isinstance(m, nn.Linear)}
        self.weights = {path: m.weight.detach().clone() for path, m in self.linears.items()}
        self.amax: dict[str, torch.Tensor] = {}
        self.groups: set[str] = set()  # "layers.3.qkv", ... quantised now
        self.calibrating, self.layer = False, 0
        for path, module in self.linears.items():
            module.register_forward_pre_hook(self._hook(path))
        self.num_layers = len(layers)

    def _hook(self, path: str):
        index, group = int(path.split(".")[1]), group_of(path)

        def hook(module, args):
            if path.endswith("q_proj"):
                self.layer = index  # the attention that follows is this layer's
            return (self._quantise(group, path, args[0]),)

        return hook

    def _quantise(self, group: str, key: str, x: torch.Tensor) -> torch.Tensor:
        if self.calibrating:
            seen = x.detach().abs().amax()
            self.amax[key] = torch.maximum(self.amax.get(key, seen), seen)
            if key in self.linears:  # a Linear's input: per-channel maxima too (SmoothQuant)
                channels = x.detach().abs().reshape(-1, x.shape[-1]).amax(dim=0)
                self.channel_amax[key] = torch.maximum(self.channel_amax.get(key, channels), channels)
            return x
        return self.fake(x, self.amax[key]) if group in self.groups else x

    def attention(self, q, k, v, attn_mask=None, **kwargs):
        """scaled_dot_product_attention with fp8 Q, K, probabilities and V when this layer's group is on."""
        group = f"layers.{self.layer}.attention"
        if not self.calibrating and group not in self.groups:
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, **kwargs)
        q, k, v = (self._quantise(group, f"{group}.{n}", t) for n, t in (("q", q), ("k", k), ("v", v)))
        scores = q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5
        probs = torch.softmax(scores + attn_mask if attn_mask is not None else scores, dim=-1)
        return self._quantise(group, f"{group}.p", probs) @ v

    def use(self, groups) -> None:
        """Quantise exactly ``groups``: their weights per output channel, their inputs per tensor."""
        self.groups = set(groups)
        for path, module in self.linears.items():
            w = self.weights[path]
            on = group_of(path) in self.groups
            module.weight.data = self.fake(w, w.abs().amax(dim=1, keepdim=True)) if on else w.clone()

    def smooth(self, alpha: float) -> None:
        """SmoothQuant scale migration on q/k/v and gate/up (module docstring), from the calibrated per-channel
        maxima; the per-tensor activation maxima are then those of X / s (calibrate again afterwards)."""
        for i, (attn_norm, mlp_norm) in self.norms.items():
            for norm, names in ((attn_norm, ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
                                (mlp_norm, ("mlp.gate_proj", "mlp.up_proj"))):
                paths = [f"layers.{i}.{n}" for n in names]
                x_max = self.channel_amax[paths[0]]
                w_max = torch.stack([self.weights[p].abs().amax(dim=0) for p in paths]).amax(dim=0)
                s = (x_max.clamp(min=1e-5) ** alpha / w_max.clamp(min=1e-5) ** (1 - alpha)).clamp(min=1e-5)
                norm.weight.data = norm.weight.data / s
                for p in paths:
                    self.weights[p] = self.weights[p] * s
                    self.linears[p].weight.data = self.weights[p].clone()
        self.amax.clear()
        self.channel_amax.clear()


def group_of(path: str) -> str:
    """``layers.3.qkv`` for ``layers.3.self_attn.k_proj``."""
    _, index, rest = path.split(".", 2)
    return next(f"layers.{index}.{role}" for role, names in ROLES.items() if rest in names)


class _AttentionShim:
    """Stands in for ``torch.nn.functional`` in the backbone module so its SDPA goes through ``FakeQuant``."""

    def __init__(self, fake: FakeQuant):
        self._fake = fake

    def __getattr__(self, name):
        return self._fake.attention if name == "scaled_dot_product_attention" else getattr(F, name)


def group_flops(config, seq: float) -> dict[str, float]:
    """FLOPs per token of each role of one decoder layer at mean sequence length ``seq``."""
    t = config.backbone.text
    e, dh = t.hidden_size, t.head_dim
    hq, hkv = t.num_attention_heads * dh, t.num_key_value_heads * dh
    return {"qkv": 2 * e * (hq + 2 * hkv), "o_proj": 2 * hq * e, "gate_up": 4 * e * t.intermediate_size,
            "down_proj": 2 * t.intermediate_size * e, "attention": 4 * seq * hq}


def backbone_cases(checkpoint: Path, seeds: int, calib_count: int):
    """(wrapper, its spec, calibration feeds, evaluation feeds, config): the backbone graph's inputs on the
    fp32 chain for the export's synthetic calibration set and for ``verify``'s cases."""
    family = family_of_checkpoint(checkpoint)
    face = family.export()
    model, config, folder = face.open_model(checkpoint, dtype=torch.float32)
    processor = face.processor_spec(folder)
    tokenizer = face.resolve_tokenizer(folder, None, config)
    preprocessor = face.host_processor(processor, tokenizer, config)
    sizes = tuple(dict.fromkeys(face.processed_image_size(h, w, processor) for h, w in DEFAULT_CAMERA_FRAMES))
    tags = sorted(processor.embodiments)
    slot_of = {processor.embodiments[t].id: processor.embodiments[t].id for t in tags}
    contract = family.runtime().CONTRACT
    modules = face.segment_modules(model, config, list(contract.graphs), None)
    calibration = synthetic_calibration_set(preprocessor, tags, sizes, count=calib_count)
    evaluation = [(tag, synthetic_observation(preprocessor, tag, seed=s, image_sizes=list(sizes[s % len(sizes):] + sizes[:s % len(sizes)])))
                  for tag in tags for s in range(seeds)]
    name = next(n for n, (kind, _, _) in modules.items() if kind == "backbone")
    calib = calibration_records(modules, calibration, preprocessor, config, contract, slot_of).inputs[name]
    evaluation_set = type(calibration)("evaluation", tuple(evaluation), "eval")
    evals = calibration_records(modules, evaluation_set, preprocessor, config, contract, slot_of).inputs[name]
    return modules[name][1], contract.graphs["backbone"], calib, evals, config, [(tag, s) for tag in tags for s in range(seeds)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--format", choices=sorted(FAKE), default="fp8")
    parser.add_argument("--seeds", type=int, default=2, help="verify's observation seeds per embodiment")
    parser.add_argument("--calib-count", type=int, default=4, help="the export's synthetic calibration count")
    parser.add_argument("--sweep", choices=("full", "plans"), default="plans",
                        help="full: every group alone, every role, every layer left out; plans: what the plans need")
    parser.add_argument("--smooth", type=float, default=None, metavar="ALPHA", help="SmoothQuant migration first")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/n17_fp8_sensitivity_small")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    started = time.time()
    graph, spec, calib, evals, config, cases = backbone_cases(args.checkpoint, args.seeds, args.calib_count)
    tags, seeds = [t for t, _ in cases], [s for _, s in cases]
    fake = FakeQuant(graph, args.format)
    n17_backbone.F = _AttentionShim(fake)

    def calibrate() -> None:
        fake.calibrating = True
        for feeds in calib:
            run_torch_graph(graph, spec, feeds)
        fake.calibrating = False

    calibrate()
    fake.use(())
    reference = [run_torch_graph(graph, spec, feeds)["backbone_features"] for feeds in evals]
    if args.smooth is not None:  # the same function of the input (norm weight / s, W · s), new maxima
        fake.smooth(args.smooth)
        calibrate()
    masks = [feeds["attention_mask"] for feeds in evals]
    rms = float(np.sqrt(np.mean(np.concatenate([r[m] for r, m in zip(reference, masks, strict=True)]) ** 2)))

    sweep = [k for k, seed in enumerate(seeds) if seed == 0]  # one case per embodiment for the sweep

    def measure(groups, cases=None) -> dict:
        """Worst case over ``cases`` (all by default) of mean abs and cosine in verify's view and raw, and
        each case's view mean abs."""
        fake.use(groups)
        per_case = []
        worst = {"mean_abs": 0.0, "cosine": 1.0, "raw_mean_abs": 0.0, "raw_cosine": 1.0}
        for k in cases if cases is not None else range(len(evals)):
            mask = masks[k]
            got = run_torch_graph(graph, spec, evals[k])["backbone_features"][mask].astype(np.float64)
            want = reference[k][mask].astype(np.float64)
            for prefix, (a, b) in (("raw_", (got, want)), ("", (standardise(got), standardise(want)))):
                cosine = float(np.dot(a.ravel(), b.ravel()) / (np.linalg.norm(a) * np.linalg.norm(b)))
                mean_abs = float(np.abs(a - b).mean())
                worst[f"{prefix}mean_abs"] = max(worst[f"{prefix}mean_abs"], mean_abs)
                worst[f"{prefix}cosine"] = min(worst[f"{prefix}cosine"], cosine)
            per_case.append(mean_abs)
        return {**worst, "per_case": per_case}

    roles = {r: v for r, v in ROLES.items() if args.format == "fp8" or r != "attention"}
    seq = float(np.mean([m.sum(axis=1).mean() for m in masks]))
    flops = group_flops(config, seq)
    layers = range(fake.num_layers)
    every = [f"layers.{i}.{role}" for i in layers for role in roles]
    total = sum(flops[g.rsplit(".", 1)[1]] for g in [f"layers.{i}.{role}" for i in layers for role in ROLES])

    def share(groups) -> float:
        return sum(flops[g.rsplit(".", 1)[1]] for g in groups) / total

    def step(what: str) -> None:
        print(f"[{time.time() - started:6.0f} s] {what}", flush=True)

    step("sweep")
    rows = {"none": measure((), sweep), "all": measure(every, sweep)}
    alone, role_alone, all_but_layer = {}, {}, {}
    if args.sweep == "full":
        alone = {g: measure([g], sweep) for g in every}
        role_alone = {role: measure([f"layers.{i}.{role}" for i in layers], sweep) for role in roles}
        all_but_layer = {i: measure([g for g in every if not g.startswith(f"layers.{i}.")], sweep) for i in layers}
    layer_alone = {i: measure([f"layers.{i}.{role}" for role in roles if role != "attention"], sweep) for i in layers}
    step("layers alone")

    def plan(label: str, plan_roles, kept) -> None:
        """Plan ``plan_roles`` on every layer not ``kept``; attention (not per layer in an export) on all."""
        groups = [f"layers.{i}.{r}" for i in layers for r in plan_roles
                  if r == "attention" or i not in kept]
        name = f"{label}; layers {', '.join(map(str, kept)) or 'none'} kept"
        plans[name] = {**measure(groups), "gemm_flop_share": share(groups), "groups": groups, "kept_layers": list(kept)}
        step(f"{name}: {plans[name]['mean_abs']:.4f} (raw {plans[name]['raw_mean_abs']:.4f})")

    # N1.6's rule (q/k/v, gate/up, attention at fp8; o_proj, down_proj and layer 0 kept) and its neighbours;
    # then that rule less its most sensitive remaining layer (``layer_alone``) until under TARGET
    plans: dict[str, dict] = {}
    rule = tuple(r for r in ("qkv", "gate_up", "attention") if r in roles)
    variants = {"q/k/v, gate/up" + (", attention" if "attention" in roles else ""): rule,
                "q/k/v, gate/up, down_proj": ("qkv", "gate_up", "down_proj"),
                "every GEMM": tuple(roles)}
    if "attention" in roles:
        variants["q/k/v, gate/up (no attention)"] = ("qkv", "gate_up")
    for label, plan_roles in variants.items():
        for kept in ([0], []):
            plan(label, plan_roles, kept)
    kept = [0]
    first = next(iter(variants))
    while plans[f"{first}; layers {', '.join(map(str, kept))} kept"]["mean_abs"] > TARGET:
        left = [i for i in layers if i not in kept]
        if len(left) <= 1:
            break
        kept.append(max(left, key=lambda i: layer_alone[i]["mean_abs"]))
        plan(first, rule, kept)
    fake.use(())
    result = {
        "command": shlex.join([sys.executable.rsplit("/", 1)[-1], *sys.argv]), "format": args.format,
        "smooth": args.smooth, "machine": machine_info(), "seconds": round(time.time() - started, 1),
        "checkpoint": str(args.checkpoint), "layers": fake.num_layers, "calibration_cases": len(calib),
        "evaluation_cases": len(evals), "mean_real_tokens": seq, "features_rms": rms,
        "bound": BOUND, "target": TARGET, "flops_per_token": flops, "roles": list(roles),
        "cases": [f"{tag}/seed{seed}" for tag, seed in zip(tags, seeds, strict=True)], "sweep_cases": sweep,
        "rows": rows, "alone": alone, "role_alone": role_alone,
        "layer_alone": {str(k): v for k, v in layer_alone.items()},
        "all_but_layer": {str(k): v for k, v in all_but_layer.items()}, "plans": plans,
    }
    write_json(args.out.with_suffix(".json"), result)
    write_atomic(args.out.with_suffix(".md"), markdown(result, layers))
    print(markdown(result, layers))
    return 0


def markdown(r: dict, layers) -> str:
    sweep = ", ".join(r["cases"][k] for k in r["sweep_cases"])
    fmt = r["format"]
    smooth = f", after SmoothQuant migration (α = {r['smooth']})" if r.get("smooth") is not None else ""
    lines = [
        f"# N1.7 backbone: {fmt} sensitivity per layer and GEMM role{smooth}", "",
        f"`{r['command']}` — {r['seconds']} s; checkpoint `{r['checkpoint']}`, {r['layers']} decoder layers; "
        f"calibration on {r['calibration_cases']} synthetic observations (the export's seeds, sizes and count); "
        f"features RMS {r['features_rms']:.3f} over the real tokens (mean {r['mean_real_tokens']:.0f} per sample). "
        f"{fmt} simulated in PyTorch (per-tensor max-calibrated activations, per-output-channel weights), remainder "
        "fp32. Errors: mean abs and cosine of the backbone features over the real tokens in verify's view "
        "(standardised per token, as VLLN sees them; raw beside it), worst case; the sweep tables over "
        f"{sweep}, the plans over all {r['evaluation_cases']} verify cases ({', '.join(r['cases'])}). "
        f"§7 bound: mean abs ≤ {r['bound']}, cosine ≥ 0.99; target {r['target']}. Attention is planned in "
        "every layer or none (as an export can express it).", "",
        f"Machine: {json.dumps(r['machine'], sort_keys=True)}", "",
        f"Nothing {fmt}: mean abs {r['rows']['none']['mean_abs']:.4f}; everything {fmt}: mean abs "
        f"{r['rows']['all']['mean_abs']:.4f} (raw {r['rows']['all']['raw_mean_abs']:.4f}), cosine "
        f"{r['rows']['all']['cosine']:.5f}.", "",
    ]
    roles = r["roles"]
    if r["alone"]:
        lines += ["## Mean abs (view) with one group alone", "",
                  "| layer | " + " | ".join(roles) + " | whole layer alone | every layer but this one |",
                  "|---|" + "---|" * (len(roles) + 2)]
        for i in layers:
            cells = [f"{r['alone'][f'layers.{i}.{role}']['mean_abs']:.4f}" for role in roles]
            lines.append(f"| {i} | " + " | ".join(cells) + f" | {r['layer_alone'][str(i)]['mean_abs']:.4f} | "
                         f"{r['all_but_layer'][str(i)]['mean_abs']:.4f} |")
        lines.append("| every layer | " + " | ".join(f"{r['role_alone'][role]['mean_abs']:.4f}" for role in roles) + " | | |")
    else:
        lines += ["## Mean abs (view) with one layer's Linear GEMMs alone", "",
                  "| layer | " + " | ".join(str(i) for i in layers) + " |", "|---|" + "---|" * len(layers),
                  "| mean abs | " + " | ".join(f"{r['layer_alone'][str(i)]['mean_abs']:.4f}" for i in layers) + " |"]
    lines += ["", "## Plans (all cases)", "",
              "| plan | worst mean abs (view) | worst cosine (view) | per case (view) | raw worst mean abs | raw worst cosine "
              f"| share of backbone GEMM FLOPs at {fmt} |", "|---|---|---|---|---|---|---|"]
    for name, p in r["plans"].items():
        cases = " ".join(f"{x:.4f}" for x in p["per_case"])
        lines.append(f"| {name} | {p['mean_abs']:.4f} | {p['cosine']:.5f} | {cases} | {p['raw_mean_abs']:.4f} | "
                     f"{p['raw_cosine']:.5f} | {p['gemm_flop_share']:.0%} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
