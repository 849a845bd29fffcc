"""The export driver: directory contents, manifest, options, atomicity, embodiment slicing."""

from __future__ import annotations

import json

import pytest

from gr00t_trt.base.errors import EmbodimentError, ExportError
from gr00t_trt.contract.manifest import load_manifest, sha256_file
from gr00t_trt.export.driver import ExportOptions, export_checkpoint
from gr00t_trt.export.precision import ExportPrecision
from gr00t_trt.families.n16.contract import GRAPH_SPECS


def test_export_directory_holds_everything_the_runtime_needs(tiny_export):
    manifest = load_manifest(tiny_export)
    assert sorted(manifest.graphs) == sorted(
        ["vision", "backbone", "dit_context", "state_encoder", "action_encoder", "dit", "action_decoder"]
    )
    # the default names 4:3 (the engines' opt), 1:1, 16:9, 21:9 cameras and their portrait twins
    assert manifest.image_sizes == ((252, 336), (252, 252), (252, 448), (252, 588), (336, 252), (448, 252), (588, 252))
    assert manifest.steps == 4
    for name, graph in manifest.graphs.items():
        spec = GRAPH_SPECS[graph.kind]
        assert [t.name for t in graph.inputs] == spec.input_names
        assert [t.name for t in graph.outputs] == spec.output_names
        assert (tiny_export / f"{name}.onnx").is_file() and (tiny_export / f"{name}.onnx.data").is_file()
    for name in ("tokenizer.json", "chat_template.json", "processor_config.json", "statistics.json",
                 "embodiment_id.json"):
        assert manifest.files[name] == sha256_file(tiny_export / name)
    # every exported embodiment keeps its real id as the slot when the weights are not sliced
    assert {tag: (e.id, e.slot) for tag, e in manifest.embodiments.items()} == {
        "libero_panda": (2, 2), "unitree_g1": (8, 8), "new_embodiment": (10, 10)}
    assert manifest.dynamic_dims["B"] == [1, 1, 4]  # batch 1..4 by default
    # one vision graph: token rows and columns 9..21 (252..588 pixels), opt 9 x 12 (252x336)
    assert manifest.dynamic_dims["r"] == [9, 9, 21] and manifest.dynamic_dims["c"] == [9, 12, 21]
    assert manifest.dims["R"] == 28 and manifest.graphs["vision"].dims == {}
    assert manifest.vision["position_table"] == "vision_positions.npy"
    assert manifest.files["vision_positions.npy"] == sha256_file(tiny_export / "vision_positions.npy")


def test_manifest_round_trips_through_json(tiny_export):
    """Every field survives load -> to_dict (JSON has lists where the Manifest has tuples)."""
    data = json.loads((tiny_export / "manifest.json").read_text())
    assert json.loads(json.dumps(load_manifest(tiny_export).to_dict())) == data
    dit = data["graphs"]["dit"]  # and the file holds real content, not just names
    assert dit["precision"] == "fp32" and dit["file"] == "dit.onnx"
    assert dit["inputs"][2] == {"name": "cross_k", "dtype": "float32", "dims": ["L", "B", "Hc", "S", "Dh"]}


def test_existing_directory_needs_force(tiny_checkpoint, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    with pytest.raises(ExportError, match="already exists — pass --force"):
        export_checkpoint(tiny_checkpoint, out)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        (ExportOptions(precision="int4"), "--precision 'int4' — expected one of: fp32, fp16, bf16, fp8, int8"),
        (ExportOptions(image_sizes=((250, 336),)), "250x336 is not a positive multiple of 28"),
        (ExportOptions(steps=0), "--steps must be ≥ 1"),
        (ExportOptions(max_batch=0), "--max-batch must be ≥ 1"),
    ],
)
def test_bad_options_fail_before_any_work(tiny_checkpoint, tmp_path, options, match):
    with pytest.raises(ExportError, match=match):
        export_checkpoint(tiny_checkpoint, tmp_path / "out", options)
    assert not (tmp_path / "out").exists()


def test_unknown_embodiment_names_the_known_ones(tiny_checkpoint, tmp_path):
    with pytest.raises(EmbodimentError, match="'gr1' is not in the checkpoint — it has: libero_panda"):
        export_checkpoint(tiny_checkpoint, tmp_path / "out", ExportOptions(embodiments=("gr1",)))


def test_interrupted_export_leaves_nothing_that_looks_complete(tiny_checkpoint, tmp_path, monkeypatch):
    """Interrupted at the third graph, after two were written: neither the target nor the hidden partial
    folder is left. The graphs are stand-in files (a real graph takes seconds to trace and is not what
    this test is about: the driver's clean-up is)."""
    calls, partial = [], set()

    def fail_on_third(self, name, modules, example, work):
        calls.append(name)
        if len(calls) == 3:
            partial.update(p.name for p in work.iterdir())
            raise KeyboardInterrupt
        (work / f"{name}.onnx").write_bytes(b"\x08\x07")
        (work / f"{name}.onnx.data").write_bytes(bytes(4096))

    monkeypatch.setattr(ExportPrecision, "export_graph", fail_on_third)
    with pytest.raises(KeyboardInterrupt):
        export_checkpoint(tiny_checkpoint, tmp_path / "out", ExportOptions(image_sizes=((252, 252),)))
    assert len(calls) == 3 and {f"{calls[0]}.onnx", f"{calls[1]}.onnx.data"} <= partial
    assert list(tmp_path.iterdir()) == []  # neither the target nor the hidden partial directory


def test_single_embodiment_slices_category_weights(cli_export, tiny_export):
    """On the CLI's single-embodiment export (tests/e2e/conftest.py: new_embodiment, 252x448, 3 steps)."""
    assert cli_export.exit_code == 0, cli_export.output
    out = cli_export.folder
    manifest = load_manifest(out)
    assert {t: (e.id, e.slot) for t, e in manifest.embodiments.items()} == {"new_embodiment": (10, 0)}
    assert manifest.steps == 3 and manifest.image_sizes[0] == (252, 448)  # named first: the opt size
    assert manifest.dynamic_dims["r"] == [9, 9, 21] and manifest.dynamic_dims["c"] == [9, 16, 21]  # + the defaults
    for kind in ("state_encoder", "action_encoder", "action_decoder"):
        sliced = (out / f"{kind}.onnx.data").stat().st_size
        full = (tiny_export / f"{kind}.onnx.data").stat().st_size
        assert sliced * 8 < full, kind  # 1 of 32 embodiment rows (plus shared weights)
