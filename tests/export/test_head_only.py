"""The action head exported alone and run by the runtime's Pipeline from given backbone features."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from gr00t_trt.base.errors import ManifestError
from gr00t_trt.contract.manifest import load_manifest
from gr00t_trt.export.head_only import export_action_head
from gr00t_trt.families.n16.presets import preset_config
from gr00t_trt.model.action_head import Gr00tActionHead
from gr00t_trt.model.synthetic import init_synthetic_
from gr00t_trt.runtime import HeadInputs, OrtBackend, Pipeline


@pytest.fixture(scope="module")
def head_export(tmp_path_factory):
    config = dataclasses.replace(preset_config("tiny"), num_inference_timesteps=3)
    head = Gr00tActionHead(config)
    init_synthetic_(head, 3, prefix="action_head.")
    head.eval().requires_grad_(False)
    folder = tmp_path_factory.mktemp("head") / "export"
    export_action_head(head, config, folder, embodiment_slots=[5])
    return head, config, folder


def test_the_pipeline_runs_the_exported_head_like_the_reference(head_export):
    head, config, folder = head_export
    manifest = load_manifest(folder)
    assert {g.kind for g in manifest.graphs.values()} == {"dit_context", "state_encoder", "action_encoder", "dit",
                                                           "action_decoder"}
    rng = np.random.default_rng(0)
    seq = 29
    features = rng.standard_normal((1, seq, config.backbone_embedding_dim)).astype(np.float32)
    image_mask = np.zeros((1, seq), bool)
    image_mask[0, 5:20] = True
    attention = np.ones((1, seq), bool)
    state = rng.standard_normal((1, 1, config.max_state_dim)).astype(np.float32)
    noise = rng.standard_normal((1, config.action_horizon, config.max_action_dim)).astype(np.float32)
    with torch.no_grad():
        want = head.reference_denoise(*(torch.from_numpy(a) for a in (features, image_mask, attention, state)),
                                      torch.tensor([5]), torch.from_numpy(noise)).numpy()
    with Pipeline(manifest, folder, OrtBackend(device="cpu", threads=1), bucket=16) as pipe:
        got = pipe.run(HeadInputs(features, attention, image_mask, state, np.array([5])), noise, start="dit_context")
        rel = np.linalg.norm(got - want) / np.linalg.norm(want)
        assert rel < 1e-5, rel
        with pytest.raises(ManifestError, match="the export has no vision, backbone graph — it cannot run a control step from "
                                                "'vision'"):
            pipe.check(HeadInputs(features, attention, image_mask, state, np.array([5])), noise, start="vision")


def test_an_existing_folder_is_refused(head_export, tmp_path):
    head, config, _ = head_export
    (tmp_path / "taken").mkdir()
    with pytest.raises(Exception, match="already exists"):
        export_action_head(head, config, tmp_path / "taken", embodiment_slots=[5])
