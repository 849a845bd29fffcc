"""The pure-Python plan-header reader (tensorrt-notes §1.3) on synthetic bytes."""

from __future__ import annotations

import struct

import pytest

from gr00t_trt.base.errors import EngineError
from gr00t_trt.engines.plan import check_plan_version, parse_plan_header, read_plan_header


def _header(version=(10, 13, 0, 35), serialization=0, magic=0x74727466) -> bytes:
    return struct.pack("<II16s", magic, serialization, b"\0" * 16) + bytes(version) + b"rest of the plan"


def test_reads_version_of_a_plan():
    header = parse_plan_header(_header((11, 4, 0, 106)))
    assert header.trt_version == (11, 4, 0, 106) and header.version_text == "11.4.0.106"


def test_unknown_serialization_version_is_unknown_not_incompatible(tmp_path):
    plan = tmp_path / "a.plan"
    plan.write_bytes(_header(serialization=3))
    assert read_plan_header(plan).trt_version is None
    assert check_plan_version(plan, "10.13.0.35").serialization_version == 3


def test_refuses_non_plans_and_short_files(tmp_path):
    with pytest.raises(EngineError, match=r"not a TensorRT plan — expected magic 0x74727466 \('ftrt'\), got 0x"):
        parse_plan_header(_header(magic=0x12345678))
    with pytest.raises(EngineError, match="expected at least 28 bytes, got 4"):
        parse_plan_header(b"ftrt")


def test_plan_of_another_tensorrt_is_refused_with_the_rebuild_hint(tmp_path):
    plan = tmp_path / "dit.plan"
    plan.write_bytes(_header((10, 3, 0, 26)))
    with pytest.raises(EngineError, match=r"built by TensorRT 10\.3\.0\.26, expected 10\.13\.0\.35 .* rebuild it: gr00t-trt build X"):
        check_plan_version(plan, "10.13.0.35", "gr00t-trt build X")
    assert check_plan_version(plan, "10.3.0.26").trt_version == (10, 3, 0, 26)
