"""The fp16 (or bf16) remainder of a quantised graph without loading its weights: ModelOpt decides the
structure on the weight-less graph, and the weights are converted one tensor at a time into a new
external-data file.

ModelOpt's ``_convert_to_runtime_precision`` (0.47) loads nothing itself but works on a graph whose
weights are in memory, and holds several copies of it (past 19.8 GB for the full-size DiT). What it does
to a weight is structural except for the values: every float initializer read by an fp16 node becomes an
fp16 initializer of the same dims (renamed or duplicated for shared constants, where a copy keeps the
tensor's external-data entries), and the values are clamped to fp16's range first (±65504; a non-zero
value below the smallest subnormal, 2⁻²⁴, becomes +2⁻²⁴ whatever its sign, as ModelOpt does) — bf16 is a
plain round.

So (``stand_in``): every external fp32 weight is relabelled with the remainder's dtype before ModelOpt
runs, its data left on disk. Our weights are read only by fp16 nodes (MatMul, the Q of a quantised GEMM,
norms, adds, gathers), so ModelOpt keeps them as they are — no data read — and converts the small
inline tensors (scales, constants) itself. A stand-in it would have to read (a weight of an fp32-only
op) fails loudly: its bytes are twice what its new dtype and dims need. ``write_weights``
then writes every external tensor of the result, by its original location and offset, into one new
file: fp32 sources converted by ModelOpt's rule above in blocks, others copied.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import onnx

from ..base.errors import ExportError

#: remainder name → ONNX dtype of its weights
REMAINDER_DTYPES = {"fp16": onnx.TensorProto.FLOAT16, "bf16": onnx.TensorProto.BFLOAT16}
#: elements converted per block (64 MB of fp32): one block in RAM at a time, not a whole tensor
BLOCK = 1 << 24

Source = tuple[str, int, int]  # (location, offset, length) in the graph's folder


def _external(tensor: onnx.TensorProto) -> dict[str, str]:
    return {entry.key: entry.value for entry in tensor.external_data}


def _source(tensor: onnx.TensorProto) -> Source:
    info = _external(tensor)
    return info["location"], int(info.get("offset", 0)), int(info["length"])


def _tensors(model: onnx.ModelProto):
    from onnx.external_data_helper import _get_all_tensors

    return (t for t in _get_all_tensors(model) if t.data_location == onnx.TensorProto.EXTERNAL)


def stand_in(model: onnx.ModelProto, remainder: str) -> dict[Source, int]:
    """Relabel every external fp32 tensor of ``model`` (loaded without its weights) with the
    ``remainder``'s dtype, its data left where it is → the original dtype of every external tensor, by
    where its data is."""
    target = REMAINDER_DTYPES[remainder]
    sources = {}
    for tensor in _tensors(model):
        if "length" not in _external(tensor):  # optional in ONNX: written down before the dtype changes
            itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
            tensor.external_data.add(key="length", value=str(int(np.prod(tensor.dims, dtype=np.int64)) * itemsize))
        sources[_source(tensor)] = tensor.data_type
        if tensor.data_type == onnx.TensorProto.FLOAT:
            tensor.data_type = target
    return sources


def remainder_structure(model: onnx.ModelProto, folder: Path, mode: str, remainder: str
                        ) -> tuple[onnx.ModelProto, dict[Source, int]]:
    """ModelOpt's fp16/bf16 conversion of the quantised ``model`` (loaded without its weights, which are in
    ``folder``) on stand-ins → (the converted graph, whose external tensors still name the old file; the
    ``stand_in`` sources to give ``write_weights``)."""
    from modelopt.onnx.quantization.precision_utils import _convert_to_runtime_precision
    from modelopt.onnx.utils import clear_stale_value_info

    # as ModelOpt's quantize() does first: the exporter's value_info would be carried into the fp16 graph
    # with merged symbolic dims that ONNX Runtime's memory planner then refuses
    clear_stale_value_info(model)
    sources = stand_in(model, remainder)
    with contextlib.chdir(folder):  # where ONNX's checker looks for the weights file
        model = _convert_to_runtime_precision(model, quantize_mode=mode, high_precision_dtype=remainder)
    return model, sources


def to_remainder(values: np.ndarray, dtype: int) -> np.ndarray:
    """fp32 ``values`` in the remainder's ``dtype``, by ModelOpt's rule (module docstring)."""
    if dtype == onnx.TensorProto.BFLOAT16:
        import ml_dtypes

        return values.astype(ml_dtypes.bfloat16)
    finfo = np.finfo(np.float16)
    values = np.clip(values, -finfo.max, finfo.max)
    tiny = (values != 0) & (np.abs(values) < finfo.smallest_subnormal)
    if tiny.any():
        values = np.where(tiny, np.float32(finfo.smallest_subnormal), values)
    return values.astype(np.float16)


def write_weights(model: onnx.ModelProto, sources: dict[Source, int], folder: Path, data: Path) -> int:
    """Write the data of every external tensor of ``model`` (its entries still naming the original file
    in ``folder``) into the new file ``data``, fp32 sources converted to the tensor's dtype, and point the
    tensors there → bytes written."""
    written = 0
    with open(data, "wb") as out:
        for tensor in _tensors(model):
            location, offset, length = where = _source(tensor)
            if where not in sources:
                raise ExportError(f"{tensor.name}: external data at {location}:{offset} is not one of the graph's "
                                  "weights — expected the stand-ins of fp16_stream.stand_in")
            source, target = sources[where], tensor.data_type
            start = out.tell()
            with open(folder / location, "rb") as src:
                if source == target:
                    src.seek(offset)
                    for done in range(0, length, BLOCK * 4):
                        out.write(src.read(min(BLOCK * 4, length - done)))
                elif source == onnx.TensorProto.FLOAT and target in REMAINDER_DTYPES.values():
                    count = length // 4
                    src.seek(offset)  # each block read continues where the last one stopped
                    for first in range(0, count, BLOCK):
                        block = np.fromfile(src, np.float32, min(BLOCK, count - first))
                        out.write(to_remainder(block, target).tobytes())
                else:
                    raise ExportError(f"{tensor.name}: no conversion from dtype {source} to {target} — expected "
                                      "fp32 weights to an fp16/bf16 remainder")
            del tensor.external_data[:]
            for key, value in (("location", data.name), ("offset", str(start)), ("length", str(out.tell() - start))):
                tensor.external_data.add(key=key, value=value)
            written += out.tell() - start
    return written
