"""The streamed fp16 remainder (export/fp16_stream.py) against ModelOpt's conversion of the same Q/DQ graph
loaded with its weights: the same nodes in the same order, the same initializers bit for bit, the same
ONNX Runtime outputs; fp16's clamp rule; blocks; and a weight ModelOpt would have to read fails loudly."""

from __future__ import annotations

import copy
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_int8 import TRT10_OPS  # tests/export is on sys.path (pytest's prepend import mode)

from gr00t_trt.base.errors import ExportError
from gr00t_trt.export import fp16_stream
from gr00t_trt.export.fp16_stream import remainder_structure, to_remainder, write_weights
from gr00t_trt.export.qdq_writer import insert_qdq, qdq_inputs
from gr00t_trt.export.quantize import _quiet_modelopt, planned_nodes

#: (graph, head dim, mode, remainder): fp8 with attention matmuls (backbone), the DiT at both modes,
#: dit_context's Casts and boolean masks; bf16 (no exporter asks for it) structure and bits only: ONNX
#: Runtime's CPU provider has no bf16 kernels
CASES = [("backbone", 16, "fp8", "fp16"), ("dit", 8, "fp8", "fp16"), ("dit", 8, "int8", "fp16"),
         ("dit_context", 8, "fp8", "fp16"), ("dit", 8, "int8", "bf16")]


def _qdq_graph(tiny_export, folder, name, head_dim, mode):
    """The graph ``name`` of the tiny export copied to ``folder`` with the lean writer's Q/DQ (every range
    2.0), loaded without its weights."""
    folder.mkdir()
    for suffix in ("", ".data"):
        shutil.copyfile(tiny_export / f"{name}.onnx{suffix}", folder / f"{name}.onnx{suffix}")
    model = onnx.load(str(folder / f"{name}.onnx"), load_external_data=False)
    gemms = [g.name for g in planned_nodes(name, model, head_dim, mode)]
    insert_qdq(model, folder, gemms, dict.fromkeys(qdq_inputs(model, gemms)[0], 2.0))
    return model


def _reference(model, folder, mode, remainder):
    """ModelOpt's conversion on ``model`` with every weight loaded (what the lean writer did before)."""
    from modelopt.onnx.quantization.precision_utils import _convert_to_runtime_precision
    from modelopt.onnx.utils import clear_stale_value_info
    from onnx.external_data_helper import load_external_data_for_model

    model = copy.deepcopy(model)
    clear_stale_value_info(model)
    load_external_data_for_model(model, str(folder))
    with _quiet_modelopt():
        return _convert_to_runtime_precision(model, quantize_mode=mode, high_precision_dtype=remainder)


def _nodes(model):
    return [(n.op_type, n.name, list(n.input), list(n.output), [a.SerializeToString() for a in n.attribute])
            for n in model.graph.node]


@pytest.mark.parametrize(("name", "head_dim", "mode", "remainder"), CASES)
def test_streamed_remainder_is_modelopts_conversion_of_the_loaded_graph(tiny_export, tmp_path, name, head_dim, mode,
                                                                        remainder):
    from gr00t_trt.export.graph_check import ort_session

    model = _qdq_graph(tiny_export, tmp_path / "src", name, head_dim, mode)
    want = _reference(model, tmp_path / "src", mode, remainder)
    with _quiet_modelopt():
        got, sources = remainder_structure(model, tmp_path / "src", mode, remainder)
    (tmp_path / "out").mkdir()
    write_weights(got, sources, tmp_path / "src", tmp_path / "out" / "g.onnx.data")
    onnx.save(got, str(tmp_path / "out" / "g.onnx"))
    assert _nodes(got) == _nodes(want)
    assert {n.op_type for n in got.graph.node} <= TRT10_OPS
    assert (got.graph.input, got.graph.output, got.opset_import) == (want.graph.input, want.graph.output, want.opset_import)
    assert {v.name: v.type.tensor_type.elem_type for v in got.graph.value_info} == \
        {v.name: v.type.tensor_type.elem_type for v in want.graph.value_info}
    loaded = onnx.load(str(tmp_path / "out" / "g.onnx"))
    mine = {t.name: t for t in loaded.graph.initializer}
    theirs = {t.name: t for t in want.graph.initializer}
    assert sorted(mine) == sorted(theirs)
    assert sum(t.data_type == fp16_stream.REMAINDER_DTYPES[remainder] and t.data_location == TensorProto.EXTERNAL
               for t in got.graph.initializer) >= 2  # the weights themselves were streamed
    for key, tensor in theirs.items():
        assert (mine[key].data_type, list(mine[key].dims)) == (tensor.data_type, list(tensor.dims)), key
        assert numpy_helper.to_array(mine[key]).tobytes() == numpy_helper.to_array(tensor).tobytes(), key
    if remainder == "bf16":
        return
    onnx.save(want, str(tmp_path / "ref.onnx"), save_as_external_data=True, location="ref.onnx.data")
    sessions = [ort_session(tmp_path / p, "fp16") for p in ("out/g.onnx", "ref.onnx")]
    rng = np.random.default_rng(1)
    feeds = {}
    for i in sessions[0].get_inputs():
        shape = [d if isinstance(d, int) else 2 for d in i.shape]
        feeds[i.name] = (rng.standard_normal(shape).astype(np.float32) if "float" in i.type
                         else np.ones(shape, bool) if "bool" in i.type else np.zeros(shape, np.int64))
    for a, b in zip(*(s.run(None, feeds) for s in sessions), strict=True):
        np.testing.assert_array_equal(a, b)


def test_fp16_values_follow_modelopts_clamp_and_blocks_do_not_change_them(tmp_path, monkeypatch):
    smallest = np.finfo(np.float16).smallest_subnormal
    values = np.array([1e6, -1e6, 1e-9, -1e-9, 0.0, 1.5, -2.25], np.float32)
    np.testing.assert_array_equal(to_remainder(values, TensorProto.FLOAT16),
                                  np.array([65504, -65504, smallest, smallest, 0, 1.5, -2.25], np.float16))
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal((7, 5)).astype(np.float32) * 1e5, rng.standard_normal((5, 3)).astype(np.float32)]
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["h"], "mm"),
                               helper.make_node("MatMul", ["h", "w2"], ["y"], "mm2")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [2, 7])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [2, 3])],
                              [numpy_helper.from_array(weights[0], "w"), numpy_helper.from_array(weights[1], "w2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    onnx.save(model, str(tmp_path / "g.onnx"), save_as_external_data=True, location="g.onnx.data", size_threshold=0)
    model = onnx.load(str(tmp_path / "g.onnx"), load_external_data=False)
    sources = fp16_stream.stand_in(model, "fp16")
    monkeypatch.setattr(fp16_stream, "BLOCK", 4)  # 35 + 15 values in 9 + 4 blocks
    assert write_weights(model, sources, tmp_path, tmp_path / "new.data") == (35 + 15) * 2
    onnx.save(model, str(tmp_path / "new.onnx"))
    for tensor, weight in zip(onnx.load(str(tmp_path / "new.onnx")).graph.initializer, weights, strict=True):
        np.testing.assert_array_equal(numpy_helper.to_array(tensor), to_remainder(weight, TensorProto.FLOAT16))


def test_a_weight_modelopt_must_read_fails_loudly(tmp_path):
    """A weight read by an op ModelOpt keeps at fp32 (Celu) would need its data: the stand-in's bytes do
    not fit its new dtype, so the conversion raises instead of writing wrong values."""
    weight = np.linspace(-1, 1, 300, dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("Celu", ["w"], ["c"], "celu"), helper.make_node("Add", ["x", "c"], ["y"], "add")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [300])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [300])], [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    onnx.save(model, str(tmp_path / "g.onnx"), save_as_external_data=True, location="g.onnx.data", size_threshold=0)
    model = onnx.load(str(tmp_path / "g.onnx"), load_external_data=False)
    with _quiet_modelopt(), pytest.raises(Exception, match="size|reshape|shape"):
        remainder_structure(model, tmp_path, "int8", "fp16")


def test_external_data_that_is_no_stand_in_is_refused(tmp_path):
    tensor = numpy_helper.from_array(np.zeros(4, np.float32), "w")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.ClearField("raw_data")
    for key, value in (("location", "other.data"), ("offset", "0"), ("length", "16")):
        tensor.external_data.add(key=key, value=value)
    model = helper.make_model(helper.make_graph([], "g", [], [], [tensor]))
    with pytest.raises(ExportError, match=r"^w: external data at other.data:0 is not one of the graph's weights"):
        write_weights(model, {}, tmp_path, tmp_path / "new.data")


def test_an_external_tensor_without_a_length_is_read_by_its_dims(tmp_path):
    """``length`` is optional in ONNX's external-data entries: the fp32 size is written down before the
    relabel halves what the dims would say."""
    weight = np.arange(12, dtype=np.float32).reshape(3, 4)
    weight.tofile(tmp_path / "w.bin")
    tensor = onnx.TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[3, 4], data_location=TensorProto.EXTERNAL)
    tensor.external_data.add(key="location", value="w.bin")
    model = helper.make_model(helper.make_graph([], "g", [], [], [tensor]))
    assert write_weights(model, fp16_stream.stand_in(model, "fp16"), tmp_path, tmp_path / "new.data") == 24
    onnx.save(model, str(tmp_path / "new.onnx"))
    np.testing.assert_array_equal(numpy_helper.to_array(onnx.load(str(tmp_path / "new.onnx")).graph.initializer[0]),
                                  weight.astype(np.float16))
