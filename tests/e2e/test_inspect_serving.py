"""`inspect EXPORT` says which image sizes and batches an export serves (issue 18.3), from the manifest."""

from __future__ import annotations

import dataclasses
import json

from typer.testing import CliRunner

from gr00t_trt.cli import app
from gr00t_trt.contract.manifest import load_manifest
from gr00t_trt.contract.served import served_sizes, serving, serving_lines


def test_inspect_an_export_says_which_image_sizes_and_batches_it_serves(tiny_export, tmp_path):
    result = CliRunner().invoke(app, ["inspect", str(tiny_export), "--json", str(tmp_path / "i.json")])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert ("serves HxW images with H and W multiples of 28, H in 252..588, W in 252..588 (checked at 252x336, "
            "252x252, 252x448, 252x588, 336x252, 448x252, 588x252)") in text
    assert "batch 1..4, up to 16 images of one size per vision call, prompts up to 512 tokens" in text
    data = json.loads((tmp_path / "i.json").read_text())["serves"]
    assert data["batch"] == [1, 4] and data["named_image_sizes"][0] == "252x336"


def test_the_description_follows_the_manifest(tiny_export):
    manifest = load_manifest(tiny_export, verify_files=False)
    narrow = dataclasses.replace(manifest, dynamic_dims={**manifest.dynamic_dims, "r": [9, 9, 9], "c": [9, 12, 16],
                                                         "B": [1, 1, 2]})
    assert served_sizes(narrow) == "HxW images with H and W multiples of 28, H in 252..252, W in 252..448"
    assert serving(narrow)["batch"] == [1, 2]
    # an export from before the one vision graph: its per-size graphs, and the hint
    vision = manifest.graphs["vision"]
    old = dataclasses.replace(manifest, graphs={"vision_252x336": dataclasses.replace(vision, name="vision_252x336")})
    assert served_sizes(old) == "only the sizes of its per-size vision graphs vision_252x336 (an older export: re-export)"
    head = dataclasses.replace(manifest, graphs={k: g for k, g in manifest.graphs.items() if k != "vision"})
    assert serving_lines(head)[0].startswith("serves no images (the export has no vision graph)")
