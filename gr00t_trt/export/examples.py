"""One realistic example control step through the torch graph wrappers.

Export needs example inputs for every graph, and validation needs the PyTorch outputs for them. Rather
than inventing each graph's inputs separately, this runs the wrappers along the declared dataflow
(``gr00t_trt.contract.dataflow``), exactly as the runtime chains the graphs, so masks, K/V and biases are the kind
of values the graphs will really see. Example sizes come from the dim declarations (``graphs.DIMS``): they
differ from each other and from every static dim, so torch.export keeps them symbolic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..base.errors import ExportError
from ..contract.dataflow import CARRY_START, GRID, Contract
from ..contract.graphs import GraphSpec, graph_name
from ..families.n16.contract import CONTRACT as N16_CONTRACT
from ..families.n16.contract import DIMS

EXAMPLE_BATCH = DIMS["B"].example  # samples
EXAMPLE_IMAGES = DIMS["n"].example  # images in the example vision call
EXAMPLE_ROWS, EXAMPLE_COLS = DIMS["r"].example, DIMS["c"].example  # their token grid (140x196 pixels)
EXAMPLE_TEXT = 23  # text tokens per sample besides the image tokens (S = text + tokens of one image)
RIGHT_PAD = 5  # padded positions at the end of the second sample


@dataclass
class ExampleStep:
    """Per graph name: the example inputs it was first run on, and its fp32 outputs for them; and the
    dataflow values of the example control step so far (``run`` advances it one segment at a time)."""

    inputs: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    outputs: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    images: np.ndarray | None = None  # the vision graph's example batch [n, h, w, 3]
    steps: int = 1
    image_token: int = -1  # <IMG_CONTEXT> id
    contract: Contract = N16_CONTRACT

    def run(self, modules: dict, start: str, stop: str | None) -> None:
        """Run the fp32 ``modules`` (graph name → (kind, module, dims)) of the ``dataflow.segments`` piece
        from ``start`` to ``stop``, recording each graph's first call."""

        def run(kind: str, name: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            spec = self.contract.graphs[kind]
            outputs = run_torch_graph(modules[name][1], spec, feeds)
            if name not in self.inputs:  # the first occurrence (denoising step 0) is the example
                self.inputs[name] = {t.name: feeds[t.name] for t in spec.inputs}
                self.outputs[name] = outputs
            return outputs

        if start != "vision":
            self.values = self.contract.evaluate(run, self.values, steps=self.steps, start=start, stop=stop)
            return
        # vision: one call on the example batch (a size distinct from every static dim, so the image size
        # stays symbolic); each sample of the rest of the chain holds one of its images
        kind, _, _ = modules[graph_name("vision")]
        h, w = self.images.shape[1:3]
        grids = reference_grids(modules)
        feeds = {name: grids(name, h, w) for name, src in self.contract.stages["vision"].feeds.items() if src == GRID}
        outputs = run(kind, graph_name("vision"), {"images": self.images, **feeds})
        tokens = outputs["image_embeds"].shape[1]
        if tokens != int((self.values["input_ids"] == self.image_token).sum(axis=1)[0]):
            raise ExportError(f"vision graph: {tokens} tokens per {h}x{w} image — "
                              "expected the config's pixels per token to give the same count")
        for name in self.contract.image_rows():  # [T = B·t, X]: sample b holds example image b
            self.values[name] = outputs[name][:EXAMPLE_BATCH].reshape(-1, outputs[name].shape[-1])


def reference_grids(modules: dict) -> Callable[[str, int, int], np.ndarray]:
    """``evaluate``'s per-size tables from the vision wrapper among ``modules`` (name → (kind, module,
    dims)): its own PyTorch computation of them (``grid_feed``), for the export's example and calibration
    steps and the preflight."""

    def grids(name: str, height: int, width: int) -> np.ndarray:
        found = [m for kind, m, _ in modules.values() if kind == "vision"]
        if not found:
            raise ExportError(f"no per-size table {name!r} for a {height}x{width} image — expected the vision graph")
        return found[0].grid_feed(name, height, width)

    return grids


def run_torch_graph(module: torch.nn.Module, spec: GraphSpec, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One graph wrapper in PyTorch on numpy feeds (in its declared input order) → fp32 numpy outputs."""
    args = [torch.from_numpy(np.ascontiguousarray(feeds[t.name])) for t in spec.inputs]
    with torch.no_grad():
        result = module(*args)
    if isinstance(result, torch.Tensor):
        result = (result,)
    return {t.name: r.detach().float().numpy() for t, r in zip(spec.outputs, result, strict=True)}


def example_step_weight(horizon: int) -> np.ndarray:
    """float32 [EXAMPLE_BATCH, H] per-row update weights from 0 to 1 (prefix conditioning's range), so the
    example step exercises the weighted Euler update; deterministic (no draw from the example's rng)."""
    return np.broadcast_to(np.linspace(0.0, 1.0, horizon, dtype=np.float32), (EXAMPLE_BATCH, horizon)).copy()


def example_step(config, slots: list[int] | None, *, start: str = "vision", seed: int = 0) -> ExampleStep:
    """The inputs of one example control step from ``start`` (vision, or dit_context: the action head alone
    on example backbone features); ``ExampleStep.run`` then runs it through the graphs piece by piece."""
    rng = np.random.default_rng(seed)
    step = ExampleStep(steps=config.num_inference_timesteps, image_token=config.backbone.image_token_index)
    side = config.backbone.vision.patch_size * config.backbone.unshuffle_factor  # pixels per token side
    size = (EXAMPLE_ROWS * side, EXAMPLE_COLS * side)
    if start == "vision":
        step.images = rng.integers(0, 256, size=(EXAMPLE_IMAGES, *size, 3), dtype=np.uint8)
    elif start != "dit_context":
        raise ExportError(f"an example step starts at vision or dit_context, not {start!r}")

    n_slots = len(slots) if slots else config.max_num_embodiments
    head_values = {
        "state": rng.standard_normal((EXAMPLE_BATCH, 1, config.max_state_dim)).astype(np.float32),
        "embodiment_id": np.array([0, min(1, n_slots - 1)], dtype=np.int64),
        CARRY_START: rng.standard_normal(
            (EXAMPLE_BATCH, config.action_horizon, config.max_action_dim)).astype(np.float32),
        "step_weight": example_step_weight(config.action_horizon),
    }
    if start == "dit_context":  # the action head alone: example backbone features
        from .action_head_graphs import example_masks

        image_mask, attention_mask = (m.numpy() for m in example_masks(EXAMPLE_BATCH, EXAMPLE_TEXT))
        features = rng.standard_normal((EXAMPLE_BATCH, EXAMPLE_TEXT, config.backbone_embedding_dim)).astype(np.float32)
        step.values = {"backbone_features": features, "image_mask": image_mask, "attention_mask": attention_mask,
                       **head_values}
        return step

    # the rest of the chain: each sample holds one example image amid text, sample 2 right-padded
    tokens_per_image = EXAMPLE_ROWS * EXAMPLE_COLS
    seq = EXAMPLE_TEXT + tokens_per_image
    image_token = config.backbone.image_token_index
    input_ids = rng.integers(0, image_token, size=(EXAMPLE_BATCH, seq), dtype=np.int64)
    first_image = 7
    input_ids[:, first_image : first_image + tokens_per_image] = image_token
    attention_mask = np.ones((EXAMPLE_BATCH, seq), dtype=bool)
    attention_mask[1, -RIGHT_PAD:] = False
    image_mask = input_ids == image_token
    image_index = np.zeros((EXAMPLE_BATCH, seq), dtype=np.int64)
    image_index[image_mask] = np.arange(int(image_mask.sum()))
    step.values = {
        "input_ids": input_ids,
        "image_index": image_index,
        "attention_mask": attention_mask,
        "image_mask": image_mask,
        **head_values,
    }  # + image_embeds once the vision graphs ran
    assert set(N16_CONTRACT.external_inputs("backbone")) - {"image_embeds"} <= set(step.values), "the example lacks a declared input"
    return step
