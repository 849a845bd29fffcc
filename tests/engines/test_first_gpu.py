"""Issue 16, engine side: defects a first run on a real device would hit, each through the stand-in."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
from standin.onnx_graphs import make_onnx

from gr00t_trt.base.errors import EngineError
from gr00t_trt.contract.manifest import load_manifest
from gr00t_trt.engines.audit import audit_engine_information
from gr00t_trt.engines.build import BuildOptions, build_engines
from gr00t_trt.engines.cache import engine_key, plan_path, require_loadable, reuse_problem, sidecar_path
from gr00t_trt.engines.device import probe_gpu
from gr00t_trt.engines.plan import check_plan_version, read_plan_header

ONE = ("state_encoder",)


def _key(folder, graph="state_encoder", trt_version="10.13.0.35", manifest=None):
    from cuda.bindings import runtime as cudart

    manifest = manifest or load_manifest(folder)
    return engine_key(manifest, manifest.graph(graph), probe_gpu(0, cudart), trt_version)


def test_a_three_part_tensorrt_version_loads_its_own_plans(standin_trt, tiny_export, tmp_path):
    """Defect 1: TensorRT 10.3 says "10.3.0" while its plans' headers say 10.3.0.26."""
    standin_trt.trt_version = "10.3.0"
    build_engines(tiny_export, BuildOptions(out=tmp_path, only=ONE))
    plan = tmp_path / "state_encoder.plan"
    assert read_plan_header(plan).version_text == "10.3.0.26"
    assert require_loadable(tiny_export, tmp_path, "state_encoder", _key(tiny_export, trt_version="10.3.0")) == plan
    assert check_plan_version(plan, "10.3.0").trt_version == (10, 3, 0, 26)
    with pytest.raises(EngineError, match=r"built by TensorRT 10\.3\.0\.26, expected 10\.3\.1"):
        check_plan_version(plan, "10.3.1")


def test_the_audit_attaches_a_context_and_reads_myelin_metadata(standin_trt, tmp_path):
    """Defect 2: without a context every layer's format is "N/A due to dynamic shapes"; that is a failure,
    never a pass, and Myelin layers are matched to the ONNX nodes through their Metadata."""
    info = {"Layers": [{"Name": "{ForeignNode[/a/Cast.../b/Add]}", "LayerType": "Myelin",
                        "Inputs": [{"Format/Datatype": "N/A due to dynamic shapes"}],
                        "Metadata": "[ONNX Layer: /a/Cast]\x1f[ONNX Layer: gemm_node]"}]}
    report = audit_engine_information("dit", json.dumps(info), {"gemm_node": "fp8"})
    assert report.layers[0].asked == "fp8"
    with pytest.raises(EngineError, match=r"precision audit of dit: the format of 1 GEMM/conv layer\(s\) cannot be read"):
        report.raise_on_failure()


def test_an_fp8_graph_built_fp32_fails_the_build(standin_trt, tiny_export, tmp_path):
    """Defect 2 end to end: an fp8 GEMM that comes back fp32 (TensorRT #4590) is refused, not kept."""
    import tensorrt as trt

    from gr00t_trt.contract.graphs import TensorSpec
    from gr00t_trt.contract.manifest import GraphEntry
    from gr00t_trt.engines.build import (
        audit_plan,
        config_for_profile,
        create_builder,
        make_logger,
        network_from_onnx,
    )
    from gr00t_trt.engines.profiles import GraphProfile, InputProfile

    onnx_path = make_onnx(tmp_path / "fp8.onnx", "fp8")
    entry = GraphEntry("fp8", "dit", onnx_path.name, "fp8", (TensorSpec("x", "float32", ("B", 8)),), ())
    logger = make_logger(trt)
    builder = create_builder(trt, logger)
    network, _ = network_from_onnx(trt, builder, logger, onnx_path, entry)
    profile = GraphProfile("fp8", (InputProfile("x", (1, 8), (2, 8), (4, 8)),))
    standin_trt.fp32_layers = {"*"}
    plan = builder.build_serialized_network(network, config_for_profile(trt, builder, profile, BuildOptions(), b""))
    with pytest.raises(EngineError, match=r"1 GEMM/conv layer\(s\) built in fp32 .*asked fp8, built fp32"):
        audit_plan(trt, logger, bytes(plan), "fp8", onnx_path)


def test_the_key_names_the_gpu_model_and_the_profile(standin_trt, tiny_export, tmp_path):
    """Defect 7: another GPU of the same SM, or a re-export with a wider profile, is not a cache hit."""
    build_engines(tiny_export, BuildOptions(out=tmp_path, only=ONE))
    plan = plan_path(tmp_path, "state_encoder")
    assert reuse_problem(plan, _key(tiny_export)) is None
    standin_trt.device_name = "Orin Nano"
    assert "GPU Stand-in GPU (this machine/export: Orin Nano)" in reuse_problem(plan, _key(tiny_export))
    standin_trt.device_name = "Stand-in GPU"
    manifest = load_manifest(tiny_export)
    low, opt, high = manifest.dynamic_dims["B"]
    wider = dataclasses.replace(manifest, dynamic_dims={**manifest.dynamic_dims, "B": [low, opt, high * 2]})
    assert "optimisation profile" in reuse_problem(plan, _key(tiny_export, manifest=wider))


def test_fp8_below_sm89_is_refused_before_building(standin_trt, tiny_export, tmp_path):
    """Defect 8: one line naming the GPU, the graphs and the rule, before any builder call."""
    folder = shutil.copytree(tiny_export, tmp_path / "export")
    manifest_file = folder / "manifest.json"
    data = json.loads(manifest_file.read_text())
    data["graphs"]["state_encoder"]["precision"] = "fp8"
    manifest_file.write_text(json.dumps(data))
    standin_trt.compute_capability = (8, 7)
    with pytest.raises(EngineError, match=r"^Stand-in GPU \(compute capability 8\.7\) cannot run fp8, which needs ≥ 8\.9: "
                                          r"graph\(s\) state_encoder of .* re-export them at fp16"):
        build_engines(folder, BuildOptions(out=tmp_path / "engines", only=ONE))
    assert ("Builder", "build_serialized_network") not in standin_trt.calls


BAD_SIDECARS = {
    "list": b"[]",
    "string": b'"x"',
    "invalid UTF-8": b'{"format": "\xff\xfe"}',
    "wrong field types": None,  # filled from the real sidecar below
    "nested 10^5 deep": b"[" * 100_000,
}


@pytest.mark.parametrize("case", sorted(BAD_SIDECARS))
def test_a_garbage_sidecar_is_a_one_line_reason(standin_trt, tiny_export, tmp_path, case):
    """Issue 17: a sidecar that is not the expected JSON object is a reason, never a crash."""
    build_engines(tiny_export, BuildOptions(out=tmp_path, only=ONE))
    plan = plan_path(tmp_path, "state_encoder")
    content = BAD_SIDECARS[case]
    if content is None:
        data = json.loads(sidecar_path(plan).read_text())
        data["key"]["trt_version"] = 10.13
        content = json.dumps(data).encode()
    sidecar_path(plan).write_bytes(content)
    reason = reuse_problem(plan, _key(tiny_export))
    assert reason and "\n" not in reason and "sidecar" in reason and str(sidecar_path(plan).name) in reason


def test_doctor_checks_the_plan_header_as_loading_does(standin_trt, tiny_export, tmp_path):
    """Issue 17 item 12: garbage whose sha256 the sidecar matches is not "matching this machine"."""
    from gr00t_trt.engines.cache import plan_sha256
    from gr00t_trt.workflows.doctor import run_doctor

    folder = shutil.copytree(tiny_export, tmp_path / "export")
    build_engines(folder, BuildOptions())
    report = {r.name: r.value for r in run_doctor(folder).rows}
    assert report["engines"].startswith("all 7 engines")
    plan = next((folder / "engines").glob("*/dit.plan"))
    plan.write_bytes(b"garbage, not a plan" * 4)
    data = json.loads(sidecar_path(plan).read_text())
    data["plan_sha256"] = plan_sha256(plan)
    sidecar_path(plan).write_text(json.dumps(data))
    report = {r.name: r.value for r in run_doctor(folder).rows}
    assert "not a TensorRT plan — expected magic 0x74727466" in report["engines"]
    with pytest.raises(EngineError, match="cannot load the dit engine: .* is not a TensorRT plan"):
        require_loadable(folder, plan.parent, "dit", _key(folder, "dit"))


def test_a_plan_is_hashed_once_per_process_and_again_when_it_changes(standin_trt, tiny_export, tmp_path, monkeypatch):
    """Also: a multi-GB plan is hashed once, not at every probe and load."""
    import gr00t_trt.engines.cache as cache

    build_engines(tiny_export, BuildOptions(out=tmp_path, only=ONE))
    plan = plan_path(tmp_path, "state_encoder")
    hashed = []
    real = cache.sha256_file
    monkeypatch.setattr(cache, "sha256_file", lambda path: hashed.append(path) or real(path))
    cache._PLAN_HASHES.clear()
    key = _key(tiny_export)
    assert reuse_problem(plan, key) is None and reuse_problem(plan, key) is None
    assert hashed == [plan]
    plan.write_bytes(plan.read_bytes()[:-1] + b"!")  # same size, new content and mtime
    assert "does not match the sha256 in its sidecar" in reuse_problem(plan, key)
    assert len(hashed) == 2
