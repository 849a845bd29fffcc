"""One realistic example control step through the torch graph wrappers.

Export needs example inputs for every graph, and validation needs the PyTorch outputs for them. Rather
than inventing each graph's inputs separately, this runs the wrappers along the declared dataflow
(``gr00t_trt.contract.dataflow``), exactly as the runtime chains the graphs, so masks, K/V and biases are the kind
of values the graphs will really see. Example sizes come from the shared dim declarations (``graphs.SHARED_DIMS``): they
differ from each other and from every static dim, so torch.export keeps them symbolic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..base.errors import ExportError
from ..contract.dataflow import GRID, Contract
from ..contract.graphs import SHARED_DIMS, GraphSpec, graph_name

_DIMS = {d.name: d for d in SHARED_DIMS}
EXAMPLE_BATCH = _DIMS["B"].example  # samples
EXAMPLE_IMAGES = _DIMS["n"].example  # images in the example vision call
EXAMPLE_ROWS, EXAMPLE_COLS = _DIMS["r"].example, _DIMS["c"].example  # their token grid (140x196 pixels)
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
    contract: Contract = field(kw_only=True)  # the family's

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
