"""The precision plan: parsing, §5 defaults per device class, the activation dtype rule, and the graph
modules that carry half precision (fast: no export)."""

from __future__ import annotations

import pytest
import torch

from gr00t_trt.base.errors import ExportError
from gr00t_trt.bench.devices import DEVICES
from gr00t_trt.export.precision import (
    DEVICE_DEFAULTS,
    FP16_SATURATION,
    CastGraph,
    HalfDecoderGraph,
    parse_graph_precision,
    plan_precision,
    precision_module,
)
from gr00t_trt.families.n16.contract import GRAPH_SPECS


def test_single_precision_applies_to_every_graph():
    for precision in ("fp32", "fp16", "bf16"):
        plan = plan_precision(precision)
        assert set(plan.graphs) == set(GRAPH_SPECS)
        assert set(plan.graphs.values()) == {precision}


def test_fp8_means_the_architecture_defaults():
    plan = plan_precision("fp8")
    assert plan.graphs == {
        "vision": "fp16", "backbone": "fp8", "dit_context": "fp8", "dit": "fp8",
        "state_encoder": "fp16", "action_encoder": "fp16", "action_decoder": "fp16",
    }
    assert plan.uses_fp8 and plan.head_precision == "fp8"


def test_int8_without_a_device_is_the_cpu_export_and_with_one_the_gpu_export():
    assert plan_precision("int8").graphs == {  # ONNX Runtime's CPU provider: no fp16 kernels
        "vision": "fp32", "backbone": "int8", "dit_context": "int8", "dit": "int8",
        "state_encoder": "fp32", "action_encoder": "fp32", "action_decoder": "fp32",
    }
    assert plan_precision("int8").remainder("int8") == "fp32"
    assert plan_precision(device="orin").graphs == {  # TensorRT: the rest in fp16
        "vision": "fp16", "backbone": "int8", "dit_context": "int8", "dit": "int8",
        "state_encoder": "fp16", "action_encoder": "fp16", "action_decoder": "fp16",
    }


def test_device_defaults_and_orin_has_no_fp8():
    assert plan_precision(device="thor").graphs == plan_precision("fp8").graphs
    assert set(plan_precision(device="orin").graphs.values()) == {"fp16", "int8"}  # int8 W8A8 (test_int8_device.py)
    assert set(DEVICE_DEFAULTS) == set(DEVICES)  # one --device vocabulary for export and bench
    assert plan_precision(device="rtx5090").graphs == plan_precision("fp8").graphs
    with pytest.raises(ExportError, match="dit at fp8 for --device orin — Jetson AGX Orin .* has no fp8 tensor cores"):
        plan_precision(overrides="dit=fp8", device="orin")


def test_overrides_win_and_are_recorded():
    plan = plan_precision("fp16", "vision=fp8, backbone=bf16,dit=fp8")
    assert plan.graphs["vision"] == "fp8" and plan.graphs["backbone"] == "bf16" and plan.graphs["dit"] == "fp8"
    assert plan.graphs["dit_context"] == "fp16"
    assert plan.to_dict()["overrides"] == {"vision": "fp8", "backbone": "bf16", "dit": "fp8"}


def test_activation_dtype_is_float16_only_when_every_graph_is_fp16():
    assert plan_precision("fp16").activation_dtype == "float16"
    assert plan_precision("fp32").activation_dtype == "float32"
    assert plan_precision("bf16").activation_dtype == "float32"
    assert plan_precision("fp8").activation_dtype == "float32"
    assert plan_precision("fp16", "dit=bf16").activation_dtype == "float32"
    assert plan_precision("fp16").to_dict()["activation_dtype"] == "float16"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"precision": "int4"}, r"--precision 'int4' — expected one of: fp32, fp16, bf16, fp8, int8"),
        ({"overrides": "dit"}, r"--graph-precision part 'dit' — expected GRAPH=PRECISION, e.g. dit=fp8"),
        ({"overrides": "llm=fp8"}, r"graph 'llm' is unknown — expected one of: vision, backbone"),
        ({"overrides": "dit=fp4"}, r"--graph-precision dit 'fp4' — expected one of"),
        ({"overrides": "dit=fp8,dit=fp16"}, r"--graph-precision gives dit twice \(fp8 and fp16\)"),
        ({"overrides": "action_decoder=fp8"}, r"action_decoder at fp8 — expected fp32, fp16 or bf16"),
        ({"device": "jetson"}, r"device 'jetson' is unknown — expected one of: thor, orin, rtx4090, rtx5090, h100, spark"),
        ({"precision": "fp16", "device": "thor"}, r"--precision fp16 and --device thor both choose"),
    ],
)
def test_bad_plans_fail_in_one_line(kwargs, match):
    with pytest.raises(ExportError, match=match) as info:
        plan_precision(**kwargs)
    assert "\n" not in str(info.value)


def test_parse_ignores_empty_parts():
    assert parse_graph_precision(" vision=fp16 ,, dit=fp8,") == {"vision": "fp16", "dit": "fp8"}


@pytest.fixture(scope="module")
def tiny_model():
    from gr00t_trt.families.n16.presets import preset_config
    from gr00t_trt.families.n16.synthetic import synthetic_model

    return synthetic_model(preset_config("tiny"), seed=0)


class _Twice(torch.nn.Module):
    def forward(self, x, ids):
        return (x * 2, ids)


def test_half_graph_computes_in_half_with_fp32_io_and_saturation():
    module = precision_module("state_encoder", _Twice(), "fp16", "float32")
    assert isinstance(module, CastGraph)
    x = torch.tensor([1.0, -3e38, 40000.0])
    y, ids = module(x, torch.tensor([3]))
    assert y.dtype == torch.float32 and ids.dtype == torch.int64
    # inputs and outputs saturate at ±max(fp16)/2: an fp32 mask bias never becomes −inf
    assert torch.equal(y, torch.tensor([2.0, -FP16_SATURATION, FP16_SATURATION]))


def test_bf16_graph_rounds_to_bf16_without_saturation():
    module = precision_module("state_encoder", _Twice(), "bf16", "float32")
    y, _ = module(torch.tensor([1.0 + 2**-10, -3e38]), torch.tensor([0]))
    assert y[0].item() == 2.0  # 1 + 2^-10 is not representable in bf16 (8 bits of mantissa)
    assert y[1].item() < -1e38


def test_half_decoder_keeps_the_euler_update_in_fp32(tiny_model):
    from gr00t_trt.export.action_head_graphs import action_head_graph_modules, example_inputs

    config = tiny_model.config
    fp32 = action_head_graph_modules(tiny_model.action_head)["action_decoder"]
    half = precision_module("action_decoder", action_head_graph_modules(tiny_model.action_head)["action_decoder"],
                            "fp16", "float32")
    assert isinstance(half, HalfDecoderGraph)
    dit_out, actions, embodiment_id, step_weight = example_inputs("action_decoder", config)
    actions = actions + 1000.0  # large actions: an fp16 sum would round to 0.5 steps
    (want,) = fp32(dit_out, actions, embodiment_id, step_weight)
    (got,) = half(dit_out, actions, embodiment_id, step_weight)
    assert got.dtype == torch.float32
    # the velocity is fp16, the update is fp32: the error is the velocity's, not the sum's
    assert (got - want).abs().max().item() < 0.01
    (rounded,) = precision_module(
        "action_decoder", action_head_graph_modules(tiny_model.action_head)["action_decoder"], "fp16", "float16"
    )(dit_out, actions, embodiment_id)
    assert rounded.dtype == torch.float16
