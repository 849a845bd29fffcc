"""fp8 Q/DQ: which GEMMs are quantised per graph (against the declared plan), recorded calibration,
and a broken calibration that the CPU check catches."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest

from gr00t_trt.base.errors import ExportError
from gr00t_trt.export.quantize import gemm_nodes, planned_nodes, quantize_graph, quantized_nodes
from gr00t_trt.families.n16.contract import CONTRACT
from gr00t_trt.families.n16.fp8_plan import FP8_PLAN

#: what the plan must quantise in each fp8 graph of the tiny preset, by role — and nothing else
EXPECTED_ROLES = {
    "vision": {
        "encoder_layers.*.self_attn.q_proj", "encoder_layers.*.self_attn.k_proj", "encoder_layers.*.self_attn.v_proj",
        "encoder_layers.*.self_attn.out_proj", "encoder_layers.*.mlp.fc1", "encoder_layers.*.mlp.fc2", "mlp1.*",
        "attention",  # tiny vision heads are 16 wide: ModelOpt's FP8 attention applies (8 < head dim ≤ 256)
    },
    "backbone": {  # layers after the first; o_proj and down_proj stay fp16 (quantize.py docstring)
        "layers.*.self_attn.q_proj", "layers.*.self_attn.k_proj", "layers.*.self_attn.v_proj",
        "layers.*.mlp.gate_proj", "layers.*.mlp.up_proj", "attention",  # tiny LLM heads are 16 wide
    },
    "dit_context": {"to_k", "to_v"},
    "dit": {  # tiny DiT heads are 8 wide: no FP8 attention, its matmuls stay fp16
        "transformer_blocks.*.to_q", "transformer_blocks.*.to_k", "transformer_blocks.*.to_v",
        "transformer_blocks.*.to_out", "transformer_blocks.*.ff_proj", "transformer_blocks.*.ff_out",
    },
}
NEVER = ("patch_embedding", "proj_out_2")


@pytest.mark.parametrize("name", ["vision", "dit_context", "dit"])
def test_quantised_gemms_are_exactly_the_plan(mixed_export, name):
    from gr00t_trt.contract.manifest import load_manifest

    manifest = load_manifest(mixed_export)
    kind = manifest.graph(name).kind
    recorded = manifest.precision["fp8_gemms"][name]  # node -> role, as planned at export
    model = onnx.load(str(mixed_export / f"{name}.onnx"), load_external_data=False)
    assert quantized_nodes(model) == sorted(recorded)  # read back from the Q/DQ in the graph
    assert set(recorded.values()) == EXPECTED_ROLES[kind]
    assert not any(never in role for role in recorded.values() for never in NEVER)
    # every Q/DQ pair is FLOAT8E4M3FN and sits in front of a GEMM only (no norm, softmax or add)
    inits = {i.name: i for i in model.graph.initializer}
    consumers = {}
    for node in model.graph.node:
        for tensor in node.input:
            consumers.setdefault(tensor, []).append(node.op_type)
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear":
            assert inits[node.input[2]].data_type == onnx.TensorProto.FLOAT8E4M3FN
            assert set(consumers[node.output[0]]) <= {"MatMul", "Gemm"}, consumers[node.output[0]]


def test_plan_reads_roles_from_the_fp32_graph(tiny_export):
    model = onnx.load(str(tiny_export / "dit.onnx"), load_external_data=False)
    roles = {g.role for g in gemm_nodes(model)}
    assert "proj_out_2" in roles and "attention" in roles  # seen, and left out by the plan
    planned = planned_nodes("dit", model, head_dim=64)
    assert {g.role for g in planned} == EXPECTED_ROLES["dit"] | {"attention"}
    assert {g.role for g in planned_nodes("dit", model, head_dim=8)} == EXPECTED_ROLES["dit"]
    vision = onnx.load(str(tiny_export / "vision.onnx"), load_external_data=False)
    assert "patch_embedding" in {g.role for g in gemm_nodes(vision)}
    assert "patch_embedding" not in {g.role for g in planned_nodes("vision", vision)}
    backbone = onnx.load(str(tiny_export / "backbone.onnx"), load_external_data=False)
    paths = {g.path for g in gemm_nodes(backbone)}
    assert {"layers.0.self_attn", "layers.1.self_attn.o_proj", "layers.1.mlp.down_proj"} <= paths
    planned = planned_nodes("backbone", backbone, head_dim=16)
    assert {g.role for g in planned} == EXPECTED_ROLES["backbone"]
    assert all(g.path.startswith("layers.1.") for g in planned)  # tiny keeps 2 layers: the first stays fp16
    with pytest.raises(ExportError, match="graph kind 'action_decoder' has no fp8 plan"):
        planned_nodes("action_decoder", model)
    assert set(FP8_PLAN) == {"vision", "backbone", "dit_context", "dit"}


# ------------------------------------------------------------------------------------ calibration
@pytest.fixture(scope="module")
def records(tiny_export, tiny_checkpoint, tmp_path_factory):
    """Recorded observations (written by record_observation) → every graph's fp32 inputs/outputs."""
    import torch

    from gr00t_trt.contract.manifest import load_manifest
    from gr00t_trt.export.calibration import calibration_records, recorded_calibration_set
    from gr00t_trt.families.n16.checkpoint import load_model
    from gr00t_trt.families.n16.export.graph_modules import graph_modules
    from gr00t_trt.families.n16.processing.preprocess import Preprocessor
    from gr00t_trt.processing.observations import record_observation, synthetic_observation

    manifest = load_manifest(tiny_export)
    model, config, _ = load_model(tiny_checkpoint, dtype=torch.float32)
    preprocessor = Preprocessor.from_dir(tiny_export, max_state_dim=config.max_state_dim,
                                         image_token_index=config.backbone.image_token_index,
                                         pixels_per_token=config.patch_tokens_per_image_pixel)
    folder = tmp_path_factory.mktemp("recorded")
    for seed in range(2):
        obs = synthetic_observation(preprocessor.spec, "unitree_g1", seed=seed, image_sizes=((252, 336),))
        record_observation(folder, obs, "unitree_g1")
    calibration = recorded_calibration_set(folder, preprocessor.spec, list(manifest.embodiments))
    assert calibration.source == "recorded" and calibration.size == 2
    assert "recorded calibration: 2 observations" in calibration.describe()
    modules = graph_modules(model, config, None)
    slot_of = {e.id: e.slot for e in manifest.embodiments.values()}
    return calibration_records(modules, calibration, preprocessor, config, CONTRACT, slot_of)


def _quantised_dit(tiny_export, tmp_path, feeds):
    for suffix in ("", ".data"):
        shutil.copyfile(tiny_export / f"dit.onnx{suffix}", tmp_path / f"dit.onnx{suffix}")
    path = tmp_path / "dit.onnx"
    quantize_graph(path, "dit", feeds, head_dim=8)
    return path


def _dit_checks(path, records):
    from gr00t_trt.export.graph_check import compare_outputs, ort_session, run_session

    session = ort_session(path, "fp8")
    checks = []
    for feeds, want in zip(records.inputs["dit"], records.outputs["dit"], strict=True):
        spec = CONTRACT.graphs["dit"]
        checks += compare_outputs("dit", spec, "fp8", want, run_session(session, spec, feeds))
    return checks


def test_recorded_calibration_covers_every_denoising_step_and_passes(records, tiny_export, tmp_path):
    steps = [int(f["step"][0]) for f in records.inputs["dit"]]
    assert sorted(set(steps)) == [0, 1, 2, 3] and len(steps) == 8  # 2 observations × 4 steps
    checks = _dit_checks(_quantised_dit(tiny_export, tmp_path, records.inputs["dit"]), records)
    assert checks and all(c.passed for c in checks), [c.cosine for c in checks]


def test_broken_calibration_fails_the_cpu_check(records, tiny_export, tmp_path):
    """Scales measured on activations 1000× too small (e.g. data in the wrong units) saturate every real
    activation at ±448·scale: the CPU check must fail. (All-zero data does not break fp8: the calibrator
    then keeps non-degenerate scales, and fp8's exponent covers O(1) values — measured cosine 0.998.)"""
    shrunk = [{k: (v * np.float32(1e-3) if v.dtype.kind == "f" else v) for k, v in f.items()}
              for f in records.inputs["dit"]]
    checks = _dit_checks(_quantised_dit(tiny_export, tmp_path, shrunk), records)
    assert checks and not any(c.passed for c in checks)
    assert max(c.cosine for c in checks) < 0.99


def test_backbone_quantises_exactly_its_plan(records, tiny_export, tmp_path):
    """Layer-selective plans hold in ModelOpt too: a shared activation quantiser (q/k/v read one
    tensor) must not pull o_proj, down_proj or the first layer's GEMMs into fp8."""
    for suffix in ("", ".data"):
        shutil.copyfile(tiny_export / f"backbone.onnx{suffix}", tmp_path / f"backbone.onnx{suffix}")
    path = tmp_path / "backbone.onnx"
    planned = planned_nodes("backbone", onnx.load(str(path), load_external_data=False), head_dim=16)
    got = quantize_graph(path, "backbone", records.inputs["backbone"], head_dim=16)
    assert sorted(got) == sorted(g.name for g in planned)
    assert quantized_nodes(onnx.load(str(path), load_external_data=False)) == sorted(got)
    assert set(got.values()) == EXPECTED_ROLES["backbone"]


def test_quantising_without_feeds_is_refused(tiny_export, tmp_path):
    with pytest.raises(ExportError, match="dit.onnx: no calibration feeds — expected at least one sample"):
        _quantised_dit(tiny_export, tmp_path, [])


def test_quantising_from_a_plain_script(records, tiny_export, tmp_path):
    """The quantiser's child process works from a script without a ``__main__`` guard (multiprocessing's
    spawn re-ran such a script in the child and failed), and a failure in the child is one line."""
    import subprocess
    import sys

    for suffix in ("", ".data"):
        shutil.copyfile(tiny_export / f"dit_context.onnx{suffix}", tmp_path / f"dit_context.onnx{suffix}")
    np.savez(tmp_path / "feeds.npz", **records.inputs["dit_context"][0])
    script = tmp_path / "quantise.py"
    script.write_text(
        "import sys\nimport numpy as np\nfrom pathlib import Path\n"
        "from gr00t_trt.export.quantize import quantize_graph\n"
        "feeds = dict(np.load(sys.argv[1]))\n"
        "print(sorted(set(quantize_graph(Path(sys.argv[2]), 'dit_context', [feeds]).values())))\n"
        "from gr00t_trt.export.quantize import children_peak_rss\nprint(children_peak_rss())\n"
    )
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "feeds.npz"), str(tmp_path / "dit_context.onnx")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-2] == "['to_k', 'to_v']"
    assert int(done.stdout.strip().splitlines()[-1]) > 50 << 20  # the child reported its own peak RSS
    assert quantized_nodes(onnx.load(str(tmp_path / "dit_context.onnx"), load_external_data=False))
    with pytest.raises(ExportError, match=r"^fp8 quantisation of dit.onnx failed: \w+"):
        _quantised_dit(tiny_export, tmp_path, [{"not_an_input": np.zeros(1, np.float32)}])
    assert not list(tmp_path.glob(".*fp8-child*"))  # feeds, result and ModelOpt's scratch folder are gone


def test_the_child_reads_calibration_samples_one_at_a_time(tmp_path):
    """The quantiser child's feeds come from the ``.npz`` sample by sample as ONNX Runtime's calibrator asks
    for them, so it never holds all of them (int8_memory.py); the reader does not copy them up front."""
    from gr00t_trt.export.quantize import _FeedReader, _StoredFeeds

    samples = [{"x": np.full((2, 3), i, np.float32), "step": np.array([i])} for i in range(3)]
    np.savez(tmp_path / "feeds.npz", **{f"{i}/{k}": v for i, s in enumerate(samples) for k, v in s.items()})
    with np.load(tmp_path / "feeds.npz") as stored:
        feeds = _StoredFeeds(stored, ["x", "step"])
        reads = []
        counted = type("Counted", (_StoredFeeds,), {"__getitem__": lambda self, i: reads.append(i) or feeds[i]})
        reader = _FeedReader(counted(stored, ["x", "step"]))
        assert reads == [] and len(reader) == 3
        got = [reader.get_next() for _ in range(4)]
        assert reads == [0, 1, 2] and got[3] is None
        assert all(np.array_equal(g["x"], s["x"]) and g["step"][0] == i for i, (g, s) in enumerate(zip(got[:3], samples, strict=True)))
        with pytest.raises(IndexError):
            feeds[3]


def test_int8_skips_modelopts_quantize_wrapper(records, tiny_export, tmp_path, monkeypatch):
    """int8 runs ModelOpt's int8 step without ``quantize()``, whose preprocessing held a loaded copy of the
    graph (≈ 3× its size) for the whole run (benchmarks/results/int8_memory.md); the result is the plan, and
    no intermediate file is left next to the graph."""
    import modelopt.onnx.quantization as modelopt_quantization

    def wrapper(*args, **kwargs):
        raise AssertionError("ModelOpt's quantize() wrapper was called for int8")

    monkeypatch.setattr(modelopt_quantization, "quantize", wrapper)
    for suffix in ("", ".data"):
        shutil.copyfile(tiny_export / f"dit_context.onnx{suffix}", tmp_path / f"dit_context.onnx{suffix}")
    got = quantize_graph(tmp_path / "dit_context.onnx", "dit_context", records.inputs["dit_context"], isolate=False,
                         mode="int8", high_precision="fp32")
    assert sorted(set(got.values())) == ["to_k", "to_v"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dit_context.onnx", "dit_context.onnx.data"]
