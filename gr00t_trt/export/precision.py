"""The precision plan of an export, and half precision written into the graphs (architecture §5).

TensorRT 11 has no precision builder flags, so every graph carries its precision in the ONNX itself:
half-precision initializers and compute for ``fp16``/``bf16``, explicit FLOAT8E4M3FN Q/DQ for ``fp8`` and
symmetric INT8 Q/DQ for ``int8`` (``quantize.py``; both are "quantised" precisions, calibrated alike). This module decides which graph gets which precision and wraps each graph module so
that the exported graph computes at its precision while its I/O has the export's one activation dtype.

I/O dtype rule (``activation_dtype``): every float tensor between graphs has one dtype for the whole
export, recorded in the manifest, so producer and consumer always agree and the runtime never converts:

- ``float16`` when every graph computes in fp16 (half the activation bytes, no casts at all);
- ``float32`` otherwise (fp32, bf16, fp8 and mixed plans). bf16 tensors cannot be fed from numpy or
  run on ONNX Runtime CPU, and fp8 graphs (ModelOpt) keep fp32 I/O; graph boundaries carry a few MB
  per control step, negligible next to the weights, so fp32 there costs nothing that matters.

Graphs that compute in fp16 (``fp16`` and ``fp8``, whose non-quantised part ModelOpt turns into fp16)
saturate their float inputs and outputs at ±finfo(fp16).max / 2: the additive mask biases of an fp32
``dit_context`` (−1.7e38) then stay finite in an fp16 ``dit`` (−32752, the value an fp16
``dit_context`` produces itself), so a fully masked row never meets −inf.

Kept in fp32 inside half graphs: LayerNorm/RMSNorm (the modules upcast; transformers' RMSNorm too),
softmax (upcast by the attention implementations), the timestep sinusoids (precomputed in float64
tables by the graph wrappers) and the Euler update ``actions + dt·velocity`` of ``action_decoder``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..base.errors import ExportError
from ..bench.devices import DEVICES
from ..contract.quant_plans import FP8_DEFAULTS, INT8_CPU_DEFAULTS, QUANTISABLE_KINDS, device_defaults
from ..model.action_head import euler_update

PRECISIONS = ("fp32", "fp16", "bf16", "fp8", "int8")
#: precisions written as Q/DQ by ModelOpt after an fp32 export, calibrated on the graph's own inputs
QUANTISED = ("fp8", "int8")
#: the graph kinds a precision plan names (every family's control step has these seven)
GRAPH_KINDS = tuple(FP8_DEFAULTS)
HALF_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
#: graphs that may be quantised, per quantised precision (GEMM-heavy); the small graphs stay in higher precision
QUANTISED_KINDS = {"fp8": QUANTISABLE_KINDS, "int8": QUANTISABLE_KINDS}
#: the defaults of ``--precision fp8`` / ``--precision int8`` without ``--device``: fp8 runs on GPUs only
#: (GEMM-heavy graphs quantised, the rest fp16); int8 without a device is ONNX Runtime's CPU export
QUANTISED_DEFAULTS = {"fp8": FP8_DEFAULTS, "int8": INT8_CPU_DEFAULTS}
#: numpy dtype name of the inter-graph float tensors, per activation rule
ACTIVATION_DTYPES = ("float32", "float16")
#: saturation bound of graphs computing in fp16: half the fp16 range, like the mask biases
FP16_SATURATION = float(torch.finfo(torch.float16).max) / 2


#: the defaults per device of ``bench.devices`` (one --device vocabulary for export and bench)
DEVICE_DEFAULTS: dict[str, dict[str, str]] = {key: device_defaults(spec.tflops) for key, spec in DEVICES.items()}
_NO_FP8 = {key: f"{spec.name} has no fp8 tensor cores" for key, spec in DEVICES.items() if "fp8" not in spec.tflops}


@dataclass(frozen=True)
class PrecisionPlan:
    """Precision of every graph kind, and the dtype of the float tensors between graphs."""

    graphs: dict[str, str]  # kind -> fp32 | fp16 | bf16 | fp8 | int8
    device: str | None = None  # device class whose defaults were used, if any
    overrides: dict[str, str] = field(default_factory=dict)

    def of(self, kind: str) -> str:
        return self.graphs[kind]

    @property
    def activation_dtype(self) -> str:
        """float16 when every graph computes in fp16, else float32 (module docstring)."""
        return "float16" if set(self.graphs.values()) == {"fp16"} else "float32"

    @property
    def uses_fp8(self) -> bool:
        return "fp8" in self.graphs.values()

    def remainder(self, precision: str) -> str:
        """Precision of the non-quantised part of a quantised graph. fp8 graphs only run on GPUs: fp16.
        int8 graphs: fp16 for a GPU (``--device``: TensorRT runs norms, softmax and attention in fp16), fp32
        otherwise — ONNX Runtime's CPU provider fuses DQ→MatMul into its integer kernels
        (MatMulIntegerToFloat) only with fp32 scales, and has no fp16 kernels for the rest (it casts);
        TensorRT builds that graph too, with the remainder in fp32."""
        return "fp16" if precision == "fp8" or self.device is not None else "fp32"

    @property
    def quantised(self) -> bool:
        """True when some graph is fp8 or int8 (Q/DQ written by ModelOpt, needs calibration)."""
        return any(p in QUANTISED for p in self.graphs.values())

    @property
    def head_precision(self) -> str:
        """The least precise action-head graph: what the action thresholds of §7 are taken at."""
        head = [self.graphs[k] for k in ("dit_context", "state_encoder", "action_encoder", "dit", "action_decoder")]
        return least_precise(head)

    def to_dict(self) -> dict[str, Any]:
        return {
            "graphs": dict(self.graphs),
            "device": self.device,
            "overrides": dict(self.overrides),
            "activation_dtype": self.activation_dtype,
        }


def least_precise(precisions: list[str]) -> str:
    """The least precise of some graphs' precisions: what their combined result is judged at."""
    for candidate in ("fp8", "int8", "fp16", "bf16", "fp32"):
        if candidate in precisions:
            return candidate
    return "fp32"


def parse_graph_precision(text: str) -> dict[str, str]:
    """``"vision=fp16,dit=fp8"`` → {"vision": "fp16", "dit": "fp8"}; one-line errors name the bad part."""
    result: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        kind, sep, precision = (s.strip() for s in part.partition("="))
        if not sep or not kind or not precision:
            raise ExportError(f"--graph-precision part {part!r} — expected GRAPH=PRECISION, e.g. dit=fp8")
        _check_kind(kind)
        _check_precision(precision, f"--graph-precision {kind}")
        if kind in result and result[kind] != precision:
            raise ExportError(f"--graph-precision gives {kind} twice ({result[kind]} and {precision}) — give it once")
        result[kind] = precision
    return result


def plan_precision(
    precision: str = "fp32", overrides: dict[str, str] | str | None = None, device: str | None = None
) -> PrecisionPlan:
    """The plan of an export: ``precision`` for every graph (``fp8``/``int8``: their defaults), or a device
    class's defaults, then the per-graph ``overrides``."""
    _check_precision(precision, "--precision")
    if isinstance(overrides, str):
        overrides = parse_graph_precision(overrides)
    overrides = dict(overrides or {})
    if device is not None:
        if device not in DEVICE_DEFAULTS:
            raise ExportError(
                f"device {device!r} is unknown — expected one of: {', '.join(DEVICE_DEFAULTS)}"
            )
        if precision != "fp32":
            raise ExportError(
                f"--precision {precision} and --device {device} both choose every graph's precision — "
                "pass one of them (and --graph-precision for single graphs)"
            )
        graphs = dict(DEVICE_DEFAULTS[device])
    elif precision in QUANTISED:
        graphs = dict(QUANTISED_DEFAULTS[precision])
    else:
        graphs = {kind: precision for kind in GRAPH_KINDS}
    for kind, value in overrides.items():
        _check_kind(kind)
        _check_precision(value, f"--graph-precision {kind}")
        graphs[kind] = value
    for kind, value in graphs.items():
        if value in QUANTISED and kind not in QUANTISED_KINDS[value]:
            raise ExportError(
                f"{kind} at {value} — expected fp32, fp16 or bf16: only {', '.join(QUANTISED_KINDS[value])} are "
                "quantised (the small graphs are a few GEMMs with little to gain and per-embodiment weights)"
            )
        if value == "fp8" and device in _NO_FP8:
            raise ExportError(f"{kind} at fp8 for --device {device} — {_NO_FP8[device]}; use fp16 or bf16")
    return PrecisionPlan(graphs=graphs, device=device, overrides=overrides)


def _check_kind(kind: str) -> None:
    if kind not in GRAPH_KINDS:
        raise ExportError(f"graph {kind!r} is unknown — expected one of: {', '.join(GRAPH_KINDS)}")


def _check_precision(precision: str, where: str) -> None:
    if precision not in PRECISIONS:
        raise ExportError(f"{where} {precision!r} — expected one of: {', '.join(PRECISIONS)}")


# ---------------------------------------------------------------------------------- graph modules
def torch_dtype(numpy_name: str) -> torch.dtype:
    return {"float32": torch.float32, "float16": torch.float16}[numpy_name]


class CastGraph(nn.Module):
    """Runs ``inner`` in ``compute`` dtype behind I/O of ``io`` dtype; float inputs and outputs are
    saturated at ±``saturate`` when given (fp16 compute). Integer and bool tensors pass unchanged."""

    def __init__(
        self, inner: nn.Module, compute: torch.dtype, io: torch.dtype, saturate: float | None, input_names: list[str]
    ):
        super().__init__()
        self.inner = inner
        self.compute, self.io, self.saturate = compute, io, saturate
        self.forward = _named_forward(self._run, input_names)

    def _in(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_floating_point():
            return x
        x = x.to(self.compute)
        return x.clamp(-self.saturate, self.saturate) if self.saturate is not None else x

    def _out(self, y: torch.Tensor) -> torch.Tensor:
        if not y.is_floating_point():
            return y
        if self.saturate is not None:
            y = y.clamp(-self.saturate, self.saturate)
        return y.to(self.io)

    def _run(self, *args: torch.Tensor):
        result = self.inner(*(self._in(a) for a in args))
        if isinstance(result, torch.Tensor):
            return self._out(result)
        return tuple(self._out(r) for r in result)


def _named_forward(run, input_names: list[str]):
    """``run(*args)`` with the graph's input names as its signature: torch.export keys dynamic shapes
    by forward-argument name."""

    def forward(*args: torch.Tensor, **kwargs: torch.Tensor):
        return run(*args, *(kwargs[n] for n in input_names[len(args):]))

    forward.__signature__ = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in input_names]
    )
    return forward


class HalfDecoderGraph(nn.Module):
    """``action_decoder`` with the velocity MLP in half precision and the Euler update
    ``actions + (dt·velocity)·step_weight`` in fp32 (the update is where per-step rounding would accumulate)."""

    def __init__(self, graph: nn.Module, compute: torch.dtype, io: torch.dtype, saturate: float | None):
        super().__init__()
        self.action_decoder = graph.action_decoder.to(compute)
        self.dt = graph.dt
        self.compute, self.io, self.saturate = compute, io, saturate

    def forward(self, dit_out: torch.Tensor, actions: torch.Tensor, embodiment_id: torch.Tensor,
                step_weight: torch.Tensor | None = None):
        x = dit_out.to(self.compute)
        if self.saturate is not None:
            x = x.clamp(-self.saturate, self.saturate)
        velocity = self.action_decoder(x, embodiment_id).float()  # [B, H, Da]
        return (euler_update(actions.float(), self.dt * velocity, step_weight).to(self.io),)


def precision_module(kind: str, module: nn.Module, precision: str, activation_dtype: str,
                     input_names: list[str] | None = None) -> nn.Module:
    """The module to export for a graph of ``kind`` at ``precision``. Casts ``module`` in place for
    fp16/bf16 (wrappers own their parameters, so the loaded model is untouched). fp8/int8 graphs are
    exported in fp32 and quantised afterwards; they get fp16 saturation because ModelOpt computes their
    non-quantised part in fp16."""
    io = torch_dtype(activation_dtype)
    if precision == "fp32" and io == torch.float32:
        return module.float()
    compute = HALF_DTYPES.get(precision, torch.float32)
    saturate = FP16_SATURATION if precision in ("fp16", *QUANTISED) or io == torch.float16 else None
    if kind == "action_decoder":
        return HalfDecoderGraph(module, compute, io, saturate).eval()
    names = input_names or list(inspect.signature(module.forward).parameters)
    return CastGraph(module.to(compute), compute, io, saturate, names).eval()


# ---------------------------------------------------------------------------------- export driver hook
def check_precision_options(options) -> PrecisionPlan:
    """Validate the precision options of ``ExportOptions`` before any work (one-line errors)."""
    plan = plan_precision(options.precision, options.graph_precision, options.device)
    if options.calib and not plan.quantised:
        raise ExportError(
            f"--calib {options.calib} is given but no graph is fp8 or int8 — expected --precision fp8/int8 or "
            "--graph-precision GRAPH=int8 (only quantised graphs are calibrated)"
        )
    if options.calib_count < 1:
        raise ExportError(f"--calib-count must be ≥ 1, got {options.calib_count}")
    return plan


def io_value(array: np.ndarray, activation_dtype: str) -> np.ndarray:
    """An fp32 value as the export's inter-graph dtype; float16 saturates at ±finfo.max/2 like the
    graphs do (fp32 mask biases of −1.7e38 become −32752 instead of −inf)."""
    if array.dtype.kind != "f":
        return array
    if activation_dtype == "float16":
        return np.clip(array, -FP16_SATURATION, FP16_SATURATION).astype(np.float16)
    return array.astype(np.float32, copy=False)


@dataclass
class ExportPrecision:
    """Everything precision-specific of one export run, called from the export driver: the plan, the
    calibration set of fp8 graphs, and per graph: cast/wrap, export, quantise, validate."""

    plan: PrecisionPlan
    config: Any  # the family's config
    contract: Any = None  # contract.dataflow.Contract of the family
    static: dict[str, int] = field(default_factory=dict)  # the export's static dim sizes
    #: the family's quantisation plans: mode -> (plan, keep) (None: the default family's, as quantize.py's)
    plans: dict[str, tuple[dict, dict]] | None = None
    calibration: Any = None  # calibration.CalibrationSet, when some graph is fp8
    preprocessor: Any = None  # processing.Preprocessor for the calibration observations
    slot_of: dict[int, int] = field(default_factory=dict)
    image_sizes: tuple = ()  # the export's named image sizes (synthetic calibration cameras cycle through them)
    records: Any = None  # calibration.GraphRecords: the fp8 graphs' feeds, until each is quantised
    chains: list | None = None  # the calibration observations' dataflow values so far (calibrate())
    samples: dict[str, int] = field(default_factory=dict)  # fp8 graph -> calibration feeds it was quantised on
    quantized: dict[str, dict[str, str]] = field(default_factory=dict)  # graph -> {GEMM node: role}
    modes: dict[str, str] = field(default_factory=dict)  # quantised graph -> fp8 | int8

    @classmethod
    def prepare(cls, options, config, processor, embodiments: dict, slots, image_sizes, *, contract, static,
                preprocessor) -> ExportPrecision:
        """Plan from the export options; a calibration set (recorded or synthetic) when a graph is fp8.
        ``preprocessor()`` makes the family's processor for the calibration observations."""
        from .calibration import recorded_calibration_set, synthetic_calibration_set

        plan = plan_precision(options.precision, options.graph_precision, options.device)
        state = cls(plan, config, contract=contract, static=dict(static),
                    slot_of={spec.id: (0 if slots else spec.id) for spec in embodiments.values()},
                    image_sizes=tuple(image_sizes))
        if plan.quantised:
            tags = list(embodiments)
            state.preprocessor = preprocessor()
            if options.calib:
                state.calibration = recorded_calibration_set(options.calib, processor, tags)
            else:  # the family's own image chain sizes the synthetic cameras
                state.calibration = synthetic_calibration_set(state.preprocessor, tags, image_sizes,
                                                              options.calib_count)
        return state

    def calibrate(self, modules: dict, start: str, stop: str | None, later: set[str], progress) -> None:
        """Run the calibration observations' control steps through the fp32 ``modules`` of one
        ``dataflow.segments`` piece (from ``start`` to ``stop``, before they are cast in place), recording
        the inputs of its fp8 graphs; ``later``: the kinds still to come (none fp8: nothing more to run)."""
        from .calibration import GraphRecords, calibration_chains, recording, torch_runner
        from .examples import reference_grids

        kinds = {kind for kind, _, _ in modules.values()} | set(later)
        if self.calibration is None or not any(self.plan.of(kind) in QUANTISED for kind in kinds):
            self.chains = None
            return
        if self.chains is None:
            self.chains = calibration_chains(self.calibration, self.preprocessor, self.config, self.contract,
                                             self.slot_of)
        self.records = self.records or GraphRecords()
        fp8 = {name for name, (kind, _, _) in modules.items() if self.plan.of(kind) in QUANTISED}
        progress("calibration", f"running {', '.join(modules)} (fp32) on the calibration observations")
        run = recording(torch_runner(modules, self.contract), self.records, names=fp8, outputs=False)
        steps = self.config.num_inference_timesteps
        grids = reference_grids(modules)
        self.chains = [self.contract.evaluate(run, values, steps=steps, start=start, stop=stop, grids=grids)
                       for values in self.chains]

    def export_graph(self, name: str, modules: dict, example, work: Path):
        """Export graph ``name`` at its planned precision into ``work``, validate it → GraphEntry.

        Takes the graph's fp32 module out of ``modules`` (name → (kind, module, dims)) and casts it in
        place; its torch weights are freed as soon as the ONNX is written (the fp32 targets are in
        ``example``), before ModelOpt or ONNX Runtime load the graph — except for bf16 graphs, which
        are validated in PyTorch."""
        from ..contract.manifest import GraphEntry
        from .graph_modules import release_memory
        from .onnx_io import export_onnx, read_io
        from .quantize import quantize_graph

        kind, module, dims = modules.pop(name)
        precision, activation = self.plan.of(kind), self.plan.activation_dtype
        spec = self.contract.graphs[kind]
        path = work / f"{name}.onnx"
        wrapped = precision_module(kind, module, precision, activation, spec.input_names)
        del module
        feeds = {t.name: io_value(example.inputs[name][t.name], activation) for t in spec.inputs}
        args = tuple(torch.from_numpy(np.ascontiguousarray(feeds[t.name])) for t in spec.inputs)
        export_onnx(wrapped, args, spec, path, self.static, dims=self.contract.dims)
        if precision != "bf16":
            wrapped = None
            release_memory()
        if precision in QUANTISED:
            calls = (self.records.inputs if self.records else {}).pop(name, None)
            if not calls:
                raise ExportError(
                    f"{name}: no calibration sample reached this graph — expected calibration observations "
                    "with images"
                )
            self.quantized[name] = quantize_graph(path, kind, calls, head_dim=head_dim(kind, self.config),
                                                  mode=precision, high_precision=self.plan.remainder(precision),
                                                  plans=(self.plans or {}).get(precision))
            self.samples[name] = len(calls)
            self.modes[name] = precision
            del calls
            release_memory()
        inputs, outputs = read_io(path, spec)
        _check_io_dtype(path, (*inputs, *outputs), activation)
        validate_graph(path, name, spec, precision, wrapped, feeds, example.outputs[name])
        return GraphEntry(name, kind, path.name, precision, inputs, outputs, dims)

    def manifest_section(self) -> dict[str, Any]:
        section = self.plan.to_dict()
        if self.calibration is not None:
            section["calibration"] = self.calibration.to_dict()
            section["calibration"]["samples"] = {n: c for n, c in self.samples.items() if n in self.quantized}
        section["remainder"] = {n: self.plan.remainder(mode) for n, mode in sorted(self.modes.items())}
        for mode in QUANTISED:  # fp8_gemms / int8_gemms: graph -> {GEMM node: role}
            graphs = {n: nodes for n, nodes in self.quantized.items() if self.modes[n] == mode}
            if graphs or mode == "fp8":
                section[f"{mode}_gemms"] = {n: dict(sorted(nodes.items())) for n, nodes in graphs.items()}
        return section


def head_dim(kind: str, config) -> int | None:
    """Attention head size of a graph kind (decides whether ModelOpt quantises its attention matmuls)."""
    if kind == "vision":
        vision = config.backbone.vision
        heads = getattr(vision, "num_attention_heads", None) or vision.num_heads  # SigLIP2 / Qwen3-VL names
        return vision.hidden_size // heads
    if kind == "backbone":
        return config.backbone.text.head_dim
    if kind == "dit":
        return config.dit.attention_head_dim
    return None


def _check_io_dtype(path: Path, tensors, activation: str) -> None:
    for tensor in tensors:
        if tensor.dtype.startswith("float") and tensor.dtype != activation:
            raise ExportError(
                f"{path.name}: tensor {tensor.name!r} is {tensor.dtype} — expected the export's activation "
                f"dtype {activation} (graphs cast inside, never between)"
            )


def validate_graph(path: Path, name: str, spec, precision: str, module: nn.Module, feeds: dict, reference: dict) -> None:
    """The written graph (bf16: the exported module in PyTorch) against the fp32 wrapper's outputs."""
    from .examples import run_torch_graph
    from .graph_check import compare_outputs, ort_session, run_session

    if precision == "bf16":
        got = run_torch_graph(module, spec, feeds)
        where = "PyTorch bf16 on the CPU"
    else:
        got = run_session(ort_session(path, precision), spec, feeds)
        where = "ONNX Runtime CPU"
    for check in compare_outputs(name, spec, precision, reference, got):
        if not check.passed:
            raise ExportError(
                f"{path.name} ({precision}): {check.stage} does not match the fp32 graph on {where} "
                f"(rel L2 {check.rel_l2:.2e}, cosine {check.cosine:.6f}; expected {check.threshold.describe()})"
            )
