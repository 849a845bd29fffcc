"""``bench --model-only --device D`` predicts the plan an export for D would have: never fp8 on Orin."""

from __future__ import annotations

import pytest

from gr00t_trt.base.errors import Gr00tTrtError
from gr00t_trt.bench.model_only import precisions_for
from gr00t_trt.contract.quant_plans import FP8_DEFAULTS


def test_the_roofline_of_a_device_uses_that_devices_export_plan():
    orin = precisions_for(None, "orin")
    assert "fp8" not in orin.values() and orin["backbone"] == orin["dit"] == "int8" and orin["vision"] == "fp16"
    assert precisions_for(None, "thor") == FP8_DEFAULTS  # fp8 tensor cores: the §5 defaults
    assert precisions_for(None) == FP8_DEFAULTS
    assert set(precisions_for("int8", "orin").values()) == {"int8"}  # an explicit precision still wins
    with pytest.raises(Gr00tTrtError, match="unknown device 'foo' — expected one of: thor, orin"):
        precisions_for(None, "foo")


def test_export_and_roofline_share_one_device_plan():
    from gr00t_trt.bench.devices import DEVICES
    from gr00t_trt.export.precision import DEVICE_DEFAULTS

    assert {key: precisions_for(None, key) for key in DEVICES} == DEVICE_DEFAULTS
