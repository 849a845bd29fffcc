"""Checkpoint files are untrusted: shard names confined, dtypes not reinterpreted, overlapping tensors
refused (issue 7: 6, 11)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from gr00t_trt.base.errors import CheckpointError
from gr00t_trt.families.n16.checkpoint import load_model
from gr00t_trt.model.checkpoint import INDEX_FILE, read_safetensors_header, read_tensor_index
from gr00t_trt.model.inspect import inspect_checkpoint


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_header(shard: Path, mutate) -> None:
    """Rewrite a shard's JSON header with ``mutate(header)``; the data region is kept byte for byte."""
    raw = shard.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + length])
    mutate(header)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    shard.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + length :])


def _point_index_at(folder: Path, target: str) -> None:
    index = json.loads((folder / INDEX_FILE).read_text())
    key = next(iter(index["weight_map"]))
    index["weight_map"][key] = target
    (folder / INDEX_FILE).write_text(json.dumps(index))


@pytest.mark.parametrize("target", ["../../../etc/passwd", "/etc/passwd", "sub/../../x.safetensors"])
def test_shard_names_are_confined_to_the_folder(tiny_checkpoint, tmp_path, target):
    folder = _copy(tiny_checkpoint, tmp_path / "c")
    _point_index_at(folder, target)
    with pytest.raises(CheckpointError, match=r"not a plain file name in the checkpoint folder") as info:
        read_tensor_index(folder)
    assert "root:" not in str(info.value) and "header length" not in str(info.value) and "\n" not in str(info.value)  # no byte of the other file leaks


def test_symlinked_shard_leading_outside_is_refused(tiny_checkpoint, tmp_path):
    folder = _copy(tiny_checkpoint, tmp_path / "c")
    shard = sorted(folder.glob("model-*.safetensors"))[0]
    outside = tmp_path / "elsewhere.safetensors"
    shutil.move(shard, outside)
    os.symlink(outside, shard)
    with pytest.raises(CheckpointError, match=r"a symlink leading outside"):
        read_tensor_index(folder)


def test_f32_tensor_whose_header_says_i32_is_refused(tiny_checkpoint, tmp_path):
    folder = _copy(tiny_checkpoint, tmp_path / "c")
    shard = sorted(folder.glob("model-*.safetensors"))[-1]  # the action head (F32) is in the last shard
    key = next(k for k, v in read_safetensors_header(shard).items() if v.dtype == "F32")

    def retag(header):
        header[key]["dtype"] = "I32"  # same item size: only the interpretation of the bytes changes

    _edit_header(shard, retag)
    with pytest.raises(CheckpointError, match=rf"1 stored as a non-float dtype \({key}: I32; expected F32/BF16/F16\)"):
        load_model(folder)
    report = inspect_checkpoint(folder)
    assert not report.layout.ok and "layout: MISMATCH" in report.summary_lines()[0]


def test_overlapping_tensor_offsets_are_refused(tiny_checkpoint, tmp_path):
    folder = _copy(tiny_checkpoint, tmp_path / "c")
    shard = sorted(folder.glob("model-*.safetensors"))[0]
    entries = read_safetensors_header(shard)
    sizes: dict[int, list[str]] = {}
    for key, info in entries.items():
        sizes.setdefault(info.nbytes, []).append(key)
    first, second = next(keys for keys in sizes.values() if len(keys) >= 2)[:2]

    def alias(header):
        header[second]["data_offsets"] = list(header[first]["data_offsets"])  # two tensors, one set of bytes

    _edit_header(shard, alias)
    with pytest.raises(CheckpointError, match=r"overlap in the data region"):
        inspect_checkpoint(folder)  # not "layout: OK"
    with pytest.raises(CheckpointError, match=r"overlap in the data region"):
        load_model(folder)


def test_json_nesting_bombs_in_checkpoint_files_are_one_line(tmp_path):
    """issue 17, item 11: the safetensors index and a safetensors header are read with the bounded reader."""
    (tmp_path / INDEX_FILE).write_text("[" * 100_000)
    with pytest.raises(CheckpointError, match="nests deeper than 64"):
        read_tensor_index(tmp_path)
    header = b"[" * 100_000
    (tmp_path / "x.safetensors").write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(CheckpointError, match="its header is not JSON .*nests deeper than 64"):
        read_safetensors_header(tmp_path / "x.safetensors")
