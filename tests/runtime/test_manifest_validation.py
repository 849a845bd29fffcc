"""manifest.json is untrusted input: schema, ranges and file integrity are checked at load (issue 7: 3, 5, 10)."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from gr00t_trt.base.errors import ManifestError
from gr00t_trt.contract.manifest import load_manifest


@pytest.fixture
def export_copy(fake_export, tmp_path):
    folder = tmp_path / "export"
    shutil.copytree(fake_export.folder, folder)
    return folder


def _edit(folder, change) -> None:
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    result = change(data)
    data = data if result is None else result
    path.write_text(json.dumps(data))


def _set(*keys_and_value):
    *keys, value = keys_and_value

    def change(data):
        node = data
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return change


def _delete(*keys):
    def change(data):
        node = data
        for key in keys[:-1]:
            node = node[key]
        del node[keys[-1]]

    return change


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda d: [], r"not a gr00t-trt export manifest \(a JSON list"),
        (_set("steps", 0), r"steps must be an integer in 1\.\.1000, got 0"),
        (_set("steps", "4"), r"steps must be an integer in 1\.\.1000, got '4'"),
        (_set("embodiments", "robot_a", "slot", -1), r"embodiments\.robot_a\.slot must be an integer in 0\.\.1023, got -1"),
        (_set("embodiments", "robot_a", "slot", 32), r"embodiments\.robot_a\.slot 32 is outside the graphs' 32"),
        (_set("embodiments", "robot_b", "slot", 0), r"'robot_a' and 'robot_b' share slot 0"),
        (_set("graphs", []), r"graphs must be an object of graph name -> graph, got \[\]"),
        (_set("files", "dit.onnx", 12345), r"files\['dit\.onnx'\] must be a sha256 of 64 lower-case hex digits"),
        (_set("pixels_per_token", 0), r"pixels_per_token must be an integer in 1\.\.1048576, got 0"),
        (_delete("tokens", "pad_token_id"), r"tokens\.pad_token_id is missing"),
        (_set("dims", "H", 1e9), r"dims\.H must be an integer in 1\.\.65536, got 1000000000\.0"),
        (_set("dims", "H", True), r"dims\.H must be an integer"),
        (_set("dynamic_dims", "S", [1, 97, 96]), r"dynamic_dims\.S must be \[min, opt, max\] with min ≤ opt ≤ max"),
        (_set("dynamic_dims", "B", [1, 1, 10**9]), r"dynamic_dims\.B must be an integer in 1\.\.1048576"),
        (_delete("graphs"), r"missing required key\(s\) graphs"),
        (_set("graphs", "dit", "precision", "int4"), r"graphs\.dit\.precision must be one of fp32"),
        (_set("graphs", "dit", "file", "/etc/passwd"), r"graphs\.dit\.file '/etc/passwd' is not a plain relative path"),
        (_set("graphs", "dit", "file", "../dit.onnx"), r"graphs\.dit\.file '\.\./dit\.onnx' is not a plain relative"),
        (_set("image_sizes", [[0, 4]]), r"image_sizes\[0\] must be an integer in 1\.\.8192, got 0"),
        (_delete("model", "max_num_embodiments"), r"model\.max_num_embodiments is missing"),
    ],
)
def test_malformed_manifest_is_one_line_manifest_error(export_copy, change, match):
    _edit(export_copy, change)
    with pytest.raises(ManifestError, match=match) as info:
        load_manifest(export_copy)
    assert "\n" not in str(info.value)


def test_files_key_with_dotdot_is_refused(export_copy):
    def change(data):
        data["files"]["../outside.bin"] = "0" * 64

    _edit(export_copy, change)
    with pytest.raises(ManifestError, match=r"files key '\.\./outside\.bin' is not a plain relative path"):
        load_manifest(export_copy)


@pytest.mark.parametrize("unlisted", ["dit.onnx", "dit.onnx.data"])
def test_graph_files_must_be_listed(export_copy, unlisted):
    _edit(export_copy, _delete("files", unlisted))
    with pytest.raises(ManifestError, match=rf"{unlisted} is used by the runtime but not listed with its sha256"):
        load_manifest(export_copy, verify_files=False)


def test_empty_files_does_not_disable_verification(export_copy):
    _edit(export_copy, _set("files", {}))
    with pytest.raises(ManifestError, match=r"\.onnx is used by the runtime but not listed"):
        load_manifest(export_copy)


def test_unlisted_processor_file_is_refused(export_copy):
    (export_copy / "statistics.json").write_text("{}")
    with pytest.raises(ManifestError, match=r"statistics\.json is used by the runtime but not listed"):
        load_manifest(export_copy)


def test_symlink_escaping_the_folder_is_refused(export_copy, tmp_path):
    outside = tmp_path / "elsewhere.data"
    shutil.move(export_copy / "dit.onnx.data", outside)
    os.symlink(outside, export_copy / "dit.onnx.data")  # same bytes, same sha256: only the location is wrong
    with pytest.raises(ManifestError, match=r"dit\.onnx\.data resolves outside the export folder"):
        load_manifest(export_copy)


def test_valid_export_still_loads(export_copy):
    manifest = load_manifest(export_copy)
    assert manifest.steps >= 1 and manifest.graphs


# ------------------------------------------------------------------------------------------ issue 17, item 9
def _point_external_data_at(folder, location: str) -> None:
    """Re-point every external tensor of dit.onnx at ``location`` (a copy of its weights) and update
    dit.onnx's sha256 in the manifest, as an attacker with write access to the export would."""
    import onnx

    from gr00t_trt.contract.manifest import sha256_file

    target = folder / location
    shutil.copyfile(folder / "dit.onnx.data", target)
    model = onnx.load(folder / "dit.onnx", load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save(model, folder / "dit.onnx")
    _edit(folder, _set("files", "dit.onnx", sha256_file(folder / "dit.onnx")))


def test_every_external_data_file_a_graph_reads_must_be_listed(export_copy):
    _point_external_data_at(export_copy, "hidden.bin")
    with pytest.raises(ManifestError, match=r"hidden\.bin is used by the runtime but not listed with its sha256"):
        load_manifest(export_copy, verify_files=False)


def test_a_listed_external_data_file_is_hashed(export_copy):
    from gr00t_trt.contract.manifest import sha256_file

    _point_external_data_at(export_copy, "hidden.bin")
    _edit(export_copy, _set("files", "hidden.bin", sha256_file(export_copy / "hidden.bin")))
    load_manifest(export_copy)  # listed and intact: accepted
    with open(export_copy / "hidden.bin", "r+b") as f:
        f.write(b"\x7f\x7f\x7f\x7f")
    with pytest.raises(ManifestError, match=r"hidden\.bin does not match the manifest"):
        load_manifest(export_copy)


def test_external_data_outside_the_export_is_refused(export_copy, tmp_path):
    (tmp_path / "sub").mkdir()
    shutil.move(export_copy, tmp_path / "sub" / "export")
    folder = tmp_path / "sub" / "export"
    _point_external_data_at(folder, "../outside.bin")
    with pytest.raises(ManifestError, match=r"dit\.onnx reads external data from '\.\./outside\.bin', outside the export"):
        load_manifest(folder, verify_files=False)


# ------------------------------------------------------------------------------------------ issue 17, item 13
def test_the_product_of_static_dims_is_bounded(export_copy):
    def change(data):
        data["dims"]["H"] = data["dims"]["Da"] = 16384  # each within MAX_DIM, together 2^28 per sample

    _edit(export_copy, change)
    with pytest.raises(ManifestError, match=r"must be at most 16,777,216 elements per sample, got 268435456"):
        load_manifest(export_copy, verify_files=False)


def test_a_graph_that_is_not_protobuf_is_refused_at_load(export_copy):
    """Its external-data files cannot be listed, so it is refused before any backend opens it."""
    (export_copy / "dit.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(ManifestError, match=r"dit\.onnx is not a readable ONNX graph .* re-export it"):
        load_manifest(export_copy, verify_files=False)


def test_external_data_behind_an_unknown_group_field_is_still_found(tmp_path):
    from gr00t_trt.contract.onnx_external import external_data_files

    entry = b"\x0a\x08location\x12\x06hidden"  # StringStringEntryProto key/value
    tensor = b"\x6a" + bytes([len(entry)]) + entry  # TensorProto.external_data (13)
    graph = b"\x2a" + bytes([len(tensor)]) + tensor  # GraphProto.initializer (5)
    group = b"\xfb\x07\x08\x01\xfc\x07"  # unknown field 127 as a group holding a varint
    (tmp_path / "m.onnx").write_bytes(group + b"\x3a" + bytes([len(graph)]) + graph)  # ModelProto.graph (7)
    assert external_data_files(tmp_path / "m.onnx") == {"hidden"}
