"""The lean Q/DQ writer (export/qdq_writer.py) against ModelOpt's quantiser on the same tiny graphs and
calibration feeds: the same quantised GEMMs, the same Q/DQ topology and dtypes, the same scales, close
outputs — for int8 at fp32 and fp16 remainder and fp8 at fp16 remainder (attention matmuls included); at
fp16 remainder the same initializers, bit for bit but for the scales."""

from __future__ import annotations

import shutil
from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from gr00t_trt.export.quantize import quantize_graph, quantized_nodes
from gr00t_trt.families.n16.contract import CONTRACT

#: (graph, head dim, mode, remainder, ModelOpt's graph runs on ORT): the tiny backbone's 16-wide heads take
#: fp8 attention, the DiT's do not. ModelOpt's int8 step alone (without its quantize() wrapper, which first
#: clears the exporter's value_info) converts the backbone to fp16 with the 2 KV and 4 query heads merged into
#: one symbolic dim, which ONNX Runtime's CPU memory planner refuses; the lean writer clears it as the
#: wrapper does, so that case checks the lean graph runs
CASES = [("dit", 8, "int8", "fp32", True), ("backbone", 16, "int8", "fp16", False),
         ("backbone", 16, "fp8", "fp16", True), ("dit", 8, "fp8", "fp16", True)]


@pytest.fixture(scope="module")
def feeds(tiny_export, tiny_checkpoint):
    """Every graph's fp32 inputs over 2 synthetic observations (the export's own calibration chain)."""
    import torch

    from gr00t_trt.contract.manifest import load_manifest
    from gr00t_trt.export.calibration import calibration_records, synthetic_calibration_set
    from gr00t_trt.families.n16.checkpoint import load_model
    from gr00t_trt.families.n16.export.graph_modules import graph_modules
    from gr00t_trt.families.n16.processing.preprocess import Preprocessor

    manifest = load_manifest(tiny_export)
    model, config, _ = load_model(tiny_checkpoint, dtype=torch.float32)
    preprocessor = Preprocessor.from_dir(tiny_export, max_state_dim=config.max_state_dim,
                                         image_token_index=config.backbone.image_token_index,
                                         pixels_per_token=config.patch_tokens_per_image_pixel)
    calibration = synthetic_calibration_set(preprocessor.spec, ["unitree_g1"], [(252, 336)], count=2)
    slot_of = {e.id: e.slot for e in manifest.embodiments.values()}
    records = calibration_records(graph_modules(model, config, None), calibration, preprocessor, config,
                                  CONTRACT, slot_of)
    return records.inputs


def _quantised(tiny_export, folder, name, feeds, **options):
    folder.mkdir()
    for suffix in ("", ".data"):
        shutil.copyfile(tiny_export / f"{name}.onnx{suffix}", folder / f"{name}.onnx{suffix}")
    got = quantize_graph(folder / f"{name}.onnx", name, feeds, isolate=False, **options)
    return got, onnx.load(str(folder / f"{name}.onnx"))


def _qdq(model: onnx.ModelProto) -> dict:
    """Per quantised GEMM input: the chain of ops in front of it (op, axis, scale and zero-point dtypes),
    the tensor it starts from, and the DequantizeLinear's scale (float32)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    inits = {i.name: i for i in model.graph.initializer}
    chains = {}
    for node in model.graph.node:
        if node.op_type not in ("MatMul", "Gemm"):
            continue
        for position, tensor in enumerate(node.input[:2]):
            chain, scale, source = [], None, producers.get(tensor)
            while source is not None and source.op_type in ("QuantizeLinear", "DequantizeLinear"):
                axis = next((a.i for a in source.attribute if a.name == "axis"), None)
                chain.append((source.op_type, axis, inits[source.input[1]].data_type, inits[source.input[2]].data_type))
                if scale is None:
                    scale = numpy_helper.to_array(inits[source.input[1]]).astype(np.float32)
                tensor = source.input[0]
                source = producers.get(tensor)
            if chain:
                chains[(node.name, position)] = (tuple(chain), tensor.split("/for/")[0], scale)
    return chains


@pytest.mark.parametrize(("name", "head_dim", "mode", "remainder", "run"), CASES)
def test_lean_writer_writes_what_modelopt_writes(tiny_export, feeds, tmp_path, name, head_dim, mode, remainder, run):
    from gr00t_trt.export.graph_check import ort_session, run_session

    options = dict(head_dim=head_dim, mode=mode, high_precision=remainder)
    lean_roles, lean = _quantised(tiny_export, tmp_path / "lean", name, feeds[name], **options)
    ref_roles, ref = _quantised(tiny_export, tmp_path / "modelopt", name, feeds[name], writer="modelopt", **options)
    assert lean_roles == ref_roles and quantized_nodes(lean, mode) == quantized_nodes(ref, mode)
    assert Counter(n.op_type for n in lean.graph.node) == Counter(n.op_type for n in ref.graph.node)
    dtypes = [Counter(i.data_type for i in m.graph.initializer) for m in (lean, ref)]
    assert dtypes[0] == dtypes[1]
    if remainder == "fp16":  # the streamed remainder (fp16_stream.py): every tensor but the scales bit for bit
        mine, theirs = ({i.name: i for i in m.graph.initializer} for m in (lean, ref))
        assert sorted(mine) == sorted(theirs)
        for key, tensor in theirs.items():
            assert (mine[key].data_type, list(mine[key].dims)) == (tensor.data_type, list(tensor.dims)), key
            if "_scale" not in key:  # scales: calibrated by each writer, compared below
                assert numpy_helper.to_array(mine[key]).tobytes() == numpy_helper.to_array(tensor).tobytes(), key
    want, got = _qdq(ref), _qdq(lean)
    assert set(got) == set(want) and len(got) >= 2 * len(lean_roles) - 1
    for key, (chain, source, scale) in want.items():
        assert got[key][:2] == (chain, source), key
        np.testing.assert_allclose(got[key][2], scale, rtol=1e-5, err_msg=str(key))
    spec = CONTRACT.graphs[name]
    sessions = [ort_session(tmp_path / folder / f"{name}.onnx", mode) for folder in ("lean", "modelopt")[:1 + run]]
    for sample in feeds[name][:2]:
        outputs = [run_session(s, spec, sample) for s in sessions]
        assert all(np.isfinite(v).all() for v in outputs[0].values())
        for key, value in outputs[-1].items():
            np.testing.assert_allclose(outputs[0][key], value, rtol=0, atol=1e-5 * max(1.0, float(np.abs(value).max())))
