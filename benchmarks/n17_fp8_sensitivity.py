"""Which of GR00T N1.7's backbone GEMMs fp8 can take: a per-layer, per-GEMM-role sensitivity table.

N1.7's backbone output is read *before* the LLM's final RMSNorm (spec §3.6), so its magnitudes grow
with depth and §7's absolute bound (features mean abs ≤ 0.05, cosine ≥ 0.99) is tighter than on N1.6,
whose output is normed: N1.6's plan carried over fails it. This script measures, on a checkpoint's
backbone graph wrapper, what fp8 costs per group of GEMMs — one role of one decoder layer (q/k/v, which
share one input quantiser; o_proj; gate/up, also one input; down_proj; the two attention matmuls) —
alone and left out of "everything fp8", and the families of plans built from the result.

fp8 is simulated in PyTorch, as ModelOpt's ONNX Q/DQ writes it (``export/quantize.py``): a per-tensor
activation scale from the max over the export's own synthetic calibration set (same seeds, sizes and
count), a per-output-channel weight scale, E4M3 round-to-nearest with saturation at ±448; attention:
per-tensor Q, K, softmax probabilities and V. The rest stays fp32 (ModelOpt's fp16 remainder is not
simulated). Errors are measured as ``verify``'s "backbone alone" check: the wrapper on the fp32 chain's
own inputs for each exported embodiment and seed, over the real tokens, worst case over the cases.
``--onnx PLAN`` spot-checks one plan against the real quantiser (export + verify of that checkpoint).

    python benchmarks/n17_fp8_sensitivity.py CHECKPOINT --out benchmarks/results/n17_fp8_sensitivity_small
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

REPO = Path(__file__).resolve().parents[1]
FP8_MAX = 448.0
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


class FakeFp8:
    """Max-calibrated fp8 quantisers on chosen GEMM groups of an N1.7 backbone wrapper (``N17BackboneGraph``)."""

    def __init__(self, graph: nn.Module):
        layers = graph.decoder.llm.layers
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
            return x
        return fake_fp8(x, self.amax[key]) if group in self.groups else x

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
            module.weight.data = fake_fp8(w, w.abs().amax(dim=1, keepdim=True)) if on else w.clone()


def group_of(path: str) -> str:
    """``layers.3.qkv`` for ``layers.3.self_attn.k_proj``."""
    _, index, rest = path.split(".", 2)
    return next(f"layers.{index}.{role}" for role, names in ROLES.items() if rest in names)


class _AttentionShim:
    """Stands in for ``torch.nn.functional`` in the backbone module so its SDPA goes through ``FakeFp8``."""

    def __init__(self, fake: FakeFp8):
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
    parser.add_argument("--seeds", type=int, default=2, help="verify's observation seeds per embodiment")
    parser.add_argument("--calib-count", type=int, default=4, help="the export's synthetic calibration count")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/n17_fp8_sensitivity_small")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    started = time.time()
    graph, spec, calib, evals, config, cases = backbone_cases(args.checkpoint, args.seeds, args.calib_count)
    tags, seeds = [t for t, _ in cases], [s for _, s in cases]
    fake = FakeFp8(graph)
    n17_backbone.F = _AttentionShim(fake)
    fake.calibrating = True
    for feeds in calib:
        run_torch_graph(graph, spec, feeds)
    fake.calibrating = False
    fake.use(())
    reference = [run_torch_graph(graph, spec, feeds)["backbone_features"] for feeds in evals]
    masks = [feeds["attention_mask"] for feeds in evals]
    rms = float(np.sqrt(np.mean(np.concatenate([r[m] for r, m in zip(reference, masks, strict=True)]) ** 2)))

    sweep = [k for k, seed in enumerate(seeds) if seed == 0]  # one case per embodiment for the sweep

    def measure(groups, cases=None) -> dict:
        """Worst case over ``cases`` (all by default) of mean abs and cosine, and each case's mean abs."""
        fake.use(groups)
        per_case = []
        worst = {"mean_abs": 0.0, "cosine": 1.0}
        for k in cases if cases is not None else range(len(evals)):
            mask = masks[k]
            got = run_torch_graph(graph, spec, evals[k])["backbone_features"][mask].astype(np.float64)
            want = reference[k][mask].astype(np.float64)
            cosine = float(np.dot(got.ravel(), want.ravel()) / (np.linalg.norm(got) * np.linalg.norm(want)))
            per_case.append(float(np.abs(got - want).mean()))
            worst = {"mean_abs": max(worst["mean_abs"], per_case[-1]), "cosine": min(worst["cosine"], cosine)}
        return {**worst, "per_case": per_case}

    seq = float(np.mean([m.sum(axis=1).mean() for m in masks]))
    flops = group_flops(config, seq)
    layers = range(fake.num_layers)
    every = [f"layers.{i}.{role}" for i in layers for role in ROLES]
    total = sum(flops[g.rsplit(".", 1)[1]] for g in every)

    def share(groups) -> float:
        return sum(flops[g.rsplit(".", 1)[1]] for g in groups) / total

    def step(what: str) -> None:
        print(f"[{time.time() - started:6.0f} s] {what}", flush=True)

    step("sweep")
    rows = {"none": measure((), sweep), "all": measure(every, sweep)}
    alone = {g: measure([g], sweep) for g in every}
    step("groups alone")
    role_alone = {role: measure([f"layers.{i}.{role}" for i in layers], sweep) for role in ROLES}
    layer_alone = {i: measure([f"layers.{i}.{role}" for role in ROLES], sweep) for i in layers}
    all_but_layer = {i: measure([g for g in every if not g.startswith(f"layers.{i}.")], sweep) for i in layers}
    step("roles and layers")
    # plans: N1.6's rule (q/k/v, gate/up and attention fp8; o_proj, down_proj and layer 0 kept), then
    # that rule less its most sensitive remaining layer (``layer_alone``) until the worst case is under TARGET
    rule = ("qkv", "gate_up", "attention")
    kept = [0]
    plans = {}
    while True:
        groups = [f"layers.{i}.{r}" for i in layers if i not in kept for r in rule]
        name = f"q/k/v, gate/up, attention fp8; layers {', '.join(map(str, kept))} kept"
        plans[name] = {**measure(groups), "gemm_flop_share": share(groups), "groups": groups, "kept_layers": list(kept)}
        step(f"{name}: {plans[name]['mean_abs']:.4f}")
        left = [i for i in layers if i not in kept]
        if plans[name]["mean_abs"] <= TARGET or not left:
            break
        kept.append(max(left, key=lambda i: layer_alone[i]["mean_abs"]))
    for label, roles in (("q/k/v, gate/up fp8 (no attention)", ("qkv", "gate_up")),
                         ("q/k/v, gate/up, down_proj, attention fp8", ("qkv", "gate_up", "down_proj", "attention"))):
        groups = [f"layers.{i}.{r}" for i in layers if i not in kept for r in roles]
        name = f"{label}; layers {', '.join(map(str, kept))} kept"
        plans[name] = {**measure(groups), "gemm_flop_share": share(groups), "groups": groups, "kept_layers": list(kept)}
        step(f"{name}: {plans[name]['mean_abs']:.4f}")
    fake.use(())
    result = {
        "command": shlex.join([sys.executable.rsplit("/", 1)[-1], *sys.argv]),
        "machine": machine_info(), "seconds": round(time.time() - started, 1),
        "checkpoint": str(args.checkpoint), "layers": fake.num_layers, "calibration_cases": len(calib),
        "evaluation_cases": len(evals), "mean_real_tokens": seq, "features_rms": rms,
        "bound": BOUND, "target": TARGET, "flops_per_token": flops,
        "cases": [f"{tag}/seed{seed}" for tag, seed in zip(tags, seeds, strict=True)], "sweep_cases": sweep,
        "rows": rows, "alone": alone, "role_alone": role_alone,
        "layer_alone": {str(k): v for k, v in layer_alone.items()},
        "all_but_layer": {str(k): v for k, v in all_but_layer.items()}, "plans": plans,
    }
    write_json(args.out.with_suffix(".json"), result)
    write_atomic(args.out.with_suffix(".md"), markdown(result, every, layers))
    print(markdown(result, every, layers))
    return 0


def markdown(r: dict, every: list[str], layers) -> str:
    sweep = ", ".join(r["cases"][k] for k in r["sweep_cases"])
    lines = [
        "# N1.7 backbone: fp8 sensitivity per layer and GEMM role", "",
        f"`{r['command']}` — {r['seconds']} s; checkpoint `{r['checkpoint']}`, {r['layers']} decoder layers; "
        f"calibration on {r['calibration_cases']} synthetic observations (the export's seeds, sizes and count); "
        f"features RMS {r['features_rms']:.3f} over the real tokens (mean {r['mean_real_tokens']:.0f} per sample). "
        "fp8 simulated in PyTorch (per-tensor max-calibrated activations, per-output-channel weights, E4M3 "
        "saturating), remainder fp32. Errors: mean abs of the backbone features over the real tokens, worst "
        f"case; the sweep tables over {sweep}, the plans over all {r['evaluation_cases']} verify cases "
        f"({', '.join(r['cases'])}). §7 bound: mean abs ≤ {r['bound']}, cosine ≥ 0.99; target {r['target']}.", "",
        f"Machine: {json.dumps(r['machine'], sort_keys=True)}", "",
        f"Nothing fp8: mean abs {r['rows']['none']['mean_abs']:.4f}; everything fp8: mean abs "
        f"{r['rows']['all']['mean_abs']:.4f}, cosine {r['rows']['all']['cosine']:.5f}.", "",
        "## Mean abs with one group alone at fp8", "",
        "| layer | " + " | ".join(ROLES) + " | whole layer alone | every layer but this one |",
        "|---|" + "---|" * (len(ROLES) + 2),
    ]
    for i in layers:
        cells = [f"{r['alone'][f'layers.{i}.{role}']['mean_abs']:.4f}" for role in ROLES]
        lines.append(f"| {i} | " + " | ".join(cells) + f" | {r['layer_alone'][str(i)]['mean_abs']:.4f} | "
                     f"{r['all_but_layer'][str(i)]['mean_abs']:.4f} |")
    lines.append("| every layer | " + " | ".join(f"{r['role_alone'][role]['mean_abs']:.4f}" for role in ROLES) + " | | |")
    lines += ["", "## Plans (all cases)", "",
              "| plan | worst mean abs | worst cosine | per case | share of backbone GEMM FLOPs at fp8 |",
              "|---|---|---|---|---|"]
    for name, p in r["plans"].items():
        cases = " ".join(f"{x:.4f}" for x in p["per_case"])
        lines.append(f"| {name} | {p['mean_abs']:.4f} | {p['cosine']:.5f} | {cases} | {p['gemm_flop_share']:.0%} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
