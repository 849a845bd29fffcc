"""int8 W8A8 exports (issue 20) on the tiny preset: the Q/DQ written is exactly the INT8_PLAN, symmetric
int8 with per-channel weights, inside TensorRT 10's ONNX parser support, built strongly typed, run on ONNX
Runtime's integer GEMM kernels, and held to the fp8 row of the threshold table."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from gr00t_trt.base.errors import ExportError
from gr00t_trt.export.quantize import check_plan, gemm_nodes, quantized_nodes

QUANTISED_GRAPHS = ("vision", "backbone", "dit_context", "dit")
#: what INT8_PLAN quantises in each graph of the tiny preset, by role — Linear GEMMs only, no attention
EXPECTED_ROLES = {
    "vision": {
        "encoder_layers.*.self_attn.q_proj", "encoder_layers.*.self_attn.k_proj", "encoder_layers.*.self_attn.v_proj",
        "encoder_layers.*.self_attn.out_proj", "encoder_layers.*.mlp.fc1", "encoder_layers.*.mlp.fc2", "mlp1.*",
    },
    "backbone": {"layers.*.self_attn.q_proj", "layers.*.self_attn.k_proj", "layers.*.self_attn.v_proj",
                 "layers.*.mlp.gate_proj", "layers.*.mlp.up_proj"},
    "dit_context": {"to_k", "to_v"},
    "dit": {"transformer_blocks.*.to_q", "transformer_blocks.*.to_k", "transformer_blocks.*.to_v",
            "transformer_blocks.*.to_out", "transformer_blocks.*.ff_proj", "transformer_blocks.*.ff_out"},
}
#: ONNX ops TensorRT 10's parser supports (onnx-tensorrt docs/operators.md of 10.1-GA, the newest release
#: notes the parser snapshot holds; 10.3 adds to it). Only what our graphs can contain is listed.
TRT10_OPS = frozenset(
    "Abs Add And ArgMax Cast CastLike Ceil Clip Concat Constant ConstantOfShape Conv Cos CumSum "
    "DequantizeLinear Div Einsum Equal Erf Exp Expand Flatten Floor Gather GatherElements GatherND Gelu Gemm "
    "Greater GreaterOrEqual Identity If LayerNormalization Less LessOrEqual Log MatMul Max Min Mod Mul Neg "
    "Not Or Pad Pow QuantizeLinear Range Reciprocal ReduceMax ReduceMean ReduceMin ReduceSum Relu Reshape "
    "Resize Round ScatterElements ScatterND Shape Sigmoid Sign Sin Size Slice Softmax Split Sqrt Squeeze Sub "
    "Sum Tanh Tile TopK Transpose Trilu Unsqueeze Where Xor".split()
)
#: ORT CPU kernels that multiply int8 operands (QDQ fusion of DequantizeLinear → MatMul)
ORT_INT8_GEMMS = ("MatMulIntegerToFloat", "QLinearMatMul", "MatMulInteger", "QGemm")


@pytest.fixture(scope="module")
def int8_export(tiny_checkpoint, tmp_path_factory):
    from gr00t_trt.export.driver import ExportOptions, export_checkpoint

    out = tmp_path_factory.mktemp("int8") / "tiny-int8"
    export_checkpoint(tiny_checkpoint, out, ExportOptions(
        precision="int8", graph_precision="vision=int8", embodiments=("libero_panda",), image_sizes=((252, 252),),
        calib_count=1, max_batch=2))
    return out


def _graph(folder: Path, name: str) -> onnx.ModelProto:
    return onnx.load(str(folder / f"{name}.onnx"), load_external_data=False)


@pytest.mark.parametrize("name", QUANTISED_GRAPHS)
def test_int8_gemms_are_exactly_the_plan(int8_export, name):
    from gr00t_trt.contract.manifest import load_manifest

    manifest = load_manifest(int8_export)
    assert manifest.graph(name).precision == "int8"
    recorded = manifest.precision["int8_gemms"][name]
    assert quantized_nodes(_graph(int8_export, name), "int8") == sorted(recorded)  # read back from the graph
    assert set(recorded.values()) == EXPECTED_ROLES[name]
    assert quantized_nodes(_graph(int8_export, name), "fp8") == []  # int8 zero points only
    assert manifest.precision["remainder"][name] == "fp32"  # no --device: ORT CPU's integer kernels


def test_the_cpu_plan_keeps_the_small_graphs_fp32(int8_export):
    from gr00t_trt.contract.manifest import load_manifest

    graphs = {entry.kind: entry.precision for entry in load_manifest(int8_export).graphs.values()}
    assert graphs == {"vision": "int8", "backbone": "int8", "dit_context": "int8", "dit": "int8",  # vision asked for
                      "state_encoder": "fp32", "action_encoder": "fp32", "action_decoder": "fp32"}


def test_plan_check_refuses_a_gemm_planned_but_not_quantised_and_the_reverse(int8_export):
    model = _graph(int8_export, "dit")
    quantised = set(quantized_nodes(model, "int8"))
    gemms = gemm_nodes(model)
    plan = [g for g in gemms if g.name in quantised]
    assert check_plan("dit.onnx", "int8", model, plan) == sorted(quantised)
    with pytest.raises(ExportError, match=r"^dit.onnx: int8 quantised GEMMs differ from the plan — unexpected \[\], missing"):
        check_plan("dit.onnx", "int8", model, [*plan, next(g for g in gemms if g.name not in quantised)])
    with pytest.raises(ExportError, match=r"— unexpected \['node_\w+'\], missing \[\]"):
        check_plan("dit.onnx", "int8", model, plan[1:])


@pytest.mark.parametrize("name", QUANTISED_GRAPHS)
def test_qdq_is_symmetric_int8_per_channel_weights_per_tensor_activations(int8_export, name):
    model = _graph(int8_export, name)
    folder_model = onnx.load(str(int8_export / f"{name}.onnx"))  # with the weights, to read shapes
    inits = {i.name: i for i in folder_model.graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for tensor in node.input:
            consumers.setdefault(tensor, []).append(node)
    weights = activations = 0
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        zero = inits[node.input[2]]
        assert zero.data_type == onnx.TensorProto.INT8 and not numpy_helper.to_array(zero).any(), node.name
        scale = numpy_helper.to_array(inits[node.input[1]])
        assert (scale > 0).all()
        if node.op_type != "DequantizeLinear":
            continue
        users = consumers[node.output[0]]
        assert {u.op_type for u in users} == {"MatMul"}, node.name
        source = next(n for n in model.graph.node if node.input[0] in n.output)  # its QuantizeLinear
        if source.input[0] in inits:  # a weight [K, N]: one scale per output channel N
            weight = inits[source.input[0]]
            axis = next(a.i for a in node.attribute if a.name == "axis")
            assert axis == 1 and scale.shape == (weight.dims[1],), (node.name, axis, scale.shape)
            assert all(u.input[1] == node.output[0] for u in users)  # it is the MatMul's B operand
            weights += 1
        else:
            assert scale.shape == (), node.name  # one scale for the whole activation
            activations += 1
    assert weights == len(quantized_nodes(model, "int8")) and activations >= 1


def test_every_op_is_inside_tensorrt10_onnx_parser_support(int8_export):
    for name in ("vision", "backbone", "dit_context", "state_encoder", "action_encoder", "dit", "action_decoder"):
        model = _graph(int8_export, name)
        assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 13  # per-channel Q/DQ
        unsupported = {(n.domain, n.op_type) for n in model.graph.node
                       if n.domain not in ("", "ai.onnx") or n.op_type not in TRT10_OPS}
        assert not unsupported, (name, unsupported)


def test_build_dry_run_writes_strongly_typed_trtexec_lines(int8_export, tmp_path):
    from typer.testing import CliRunner

    from gr00t_trt.cli import app

    export = shutil.copytree(int8_export, tmp_path / "export")
    result = CliRunner().invoke(app, ["build", str(export), "--dry-run", "--out", str(tmp_path / "eng")])
    assert result.exit_code == 0, result.output
    lines = [ln for ln in (export / "build.sh").read_text().splitlines() if ln.startswith("trtexec ")]
    assert len(lines) == 7
    for line in lines:  # precision comes from the graphs' Q/DQ and casts, never from builder flags
        assert " --stronglyTyped " in line
        assert not any(flag in line.split() for flag in ("--int8", "--fp16", "--bf16", "--fp8", "--best"))


@pytest.mark.parametrize("name", QUANTISED_GRAPHS)
def test_ort_cpu_runs_every_planned_gemm_on_an_integer_kernel(int8_export, name, tmp_path):
    """At the runtime's optimisation level ONNX Runtime fuses each planned DequantizeLinear → MatMul into
    MatMulIntegerToFloat, no DequantizeLinear is left over, and its profile shows the integer kernel
    running. The backbone and dit_context need ``separate_activation_quantizers``: ORT fuses none of
    their GEMMs that share one activation Q/DQ (q/k/v, gate/up, to_k/to_v)."""
    import json

    import onnxruntime as ort

    from gr00t_trt.runtime.ort_backend import _ORT_TYPES, cpu_session, optimization_level

    options = ort.SessionOptions()
    options.graph_optimization_level = optimization_level(ort, "int8")
    options.optimized_model_filepath = str(tmp_path / f"{name}.optimised.onnx")
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp_path / name)
    session = cpu_session(int8_export / f"{name}.onnx", options)
    optimised = onnx.load(options.optimized_model_filepath, load_external_data=False)
    kernels = [n for n in optimised.graph.node if n.op_type in ORT_INT8_GEMMS]
    planned = quantized_nodes(_graph(int8_export, name), "int8")
    assert len(kernels) == len(planned) > 0, (name, len(kernels), len(planned))
    assert not [n.name for n in optimised.graph.node if n.op_type == "DequantizeLinear"]
    if name == "vision":
        return  # its image dims are expressions of the patch grid; the fused graph above is what it runs
    dims = {dim: bounds[1] for dim, bounds in json.loads((int8_export / "manifest.json").read_text())["dynamic_dims"].items()}
    feeds = {t.name: np.ones([d if isinstance(d, int) else dims[d] for d in t.shape], _ORT_TYPES[t.type])
             for t in session.get_inputs()}
    session.run(None, feeds)
    ran = {event["args"]["op_name"] for event in json.loads(Path(session.end_profiling()).read_text())
           if event.get("cat") == "Node" and event["name"].endswith("_kernel_time")}
    assert "MatMulIntegerToFloat" in ran, sorted(ran)


def test_separate_activation_quantizers_gives_each_gemm_its_own_pair():
    """One activation Q/DQ read by two MatMuls → two pairs with equal scales in separate initializers;
    the weights' Q/DQ are left alone and the result still runs to the same numbers."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from gr00t_trt.export.quantize import separate_activation_quantizers

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.array(0.05, np.float32), "xs"), numpy_helper.from_array(np.array(0, np.int8), "xz")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="qx"),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="dqx")]
    for w in ("a", "b"):
        inits += [numpy_helper.from_array(rng.integers(-127, 128, (8, 4)).astype(np.int8), f"{w}q"),
                  numpy_helper.from_array(np.full(4, 0.01, np.float32), f"{w}s"),
                  numpy_helper.from_array(np.zeros(4, np.int8), f"{w}z")]
        nodes += [helper.make_node("DequantizeLinear", [f"{w}q", f"{w}s", f"{w}z"], [f"{w}d"], axis=1),
                  helper.make_node("MatMul", ["xd", f"{w}d"], [f"y{w}"], name=f"mm_{w}")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 8])],
                              [helper.make_tensor_value_info(f"y{w}", TensorProto.FLOAT, [3, 4]) for w in "ab"], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    before = model.SerializeToString()
    assert separate_activation_quantizers(model) == 1
    onnx.checker.check_model(model)
    feeding = {n.name: [i for i in n.input] for n in model.graph.node if n.op_type == "MatMul"}
    assert feeding["mm_a"][0] != feeding["mm_b"][0]  # each GEMM reads its own DequantizeLinear
    quants = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert len(quants) == 2 and quants[0].input[0] == quants[1].input[0] == "x"
    assert quants[0].input[1] != quants[1].input[1]  # own initializers, so ORT's CSE keeps both
    assert quantized_nodes(model, "int8") == ["mm_a", "mm_b"]
    x = {"x": rng.standard_normal((3, 8)).astype(np.float32)}
    plain = ort.SessionOptions()
    plain.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the graphs' own arithmetic
    runs = [ort.InferenceSession(m, plain, providers=["CPUExecutionProvider"]).run(None, x)
            for m in (before, model.SerializeToString())]
    np.testing.assert_array_equal(runs[0], runs[1])


def test_int8_shares_the_fp8_row_of_the_threshold_table():
    from gr00t_trt.verification.parity import THRESHOLDS, threshold_for

    for check in THRESHOLDS:
        assert threshold_for(check, "int8") == threshold_for(check, "fp8")
    assert threshold_for("backbone", "int8").max_mean_abs == 0.05
    assert threshold_for("normalised_action", "int8").min_cosine == 0.98


def test_int8_export_passes_the_cpu_preflight(int8_export, tiny_checkpoint):
    from gr00t_trt.verification.preflight import preflight_export

    report = preflight_export(int8_export, tiny_checkpoint, seed=3)
    assert report.passed, [f"{c.stage}: cos {c.cosine:.5f} mean {c.mean_abs:.4f}" for c in report.failures]
    assert any("[int8]" in c.stage for c in report.comparisons)
    assert np.isfinite([c.cosine for c in report.comparisons]).all()
