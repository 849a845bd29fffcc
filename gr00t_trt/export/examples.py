"""One realistic example control step through the torch graph wrappers.

Export needs example inputs for every graph, and validation needs the PyTorch outputs for them. Rather
than inventing each graph's inputs separately, this runs the wrappers along the declared dataflow
(``gr00t_trt.dataflow``), exactly as the runtime chains the graphs, so masks, K/V and biases are the kind
of values the graphs will really see. Example sizes come from the dim declarations (``graphs.DIMS``): they
differ from each other and from every static dim, so torch.export keeps them symbolic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..dataflow import CARRY_START, evaluate, external_inputs
from ..graphs import DIMS, GRAPH_SPECS

EXAMPLE_BATCH = DIMS["B"].example  # samples
EXAMPLE_IMAGES = DIMS["n"].example  # images in the example vision call
EXAMPLE_TEXT = 23  # text tokens per sample besides the image tokens (S = text + tokens of one image)
RIGHT_PAD = 5  # padded positions at the end of the second sample


@dataclass
class ExampleStep:
    """Per graph name: the example inputs it was first run on, and its fp32 outputs for them."""

    inputs: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    outputs: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def run_torch_graph(module: torch.nn.Module, kind: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One graph wrapper in PyTorch on numpy feeds (in its declared input order) → fp32 numpy outputs."""
    spec = GRAPH_SPECS[kind]
    args = [torch.from_numpy(np.ascontiguousarray(feeds[t.name])) for t in spec.inputs]
    with torch.no_grad():
        result = module(*args)
    if isinstance(result, torch.Tensor):
        result = (result,)
    return {t.name: r.detach().float().numpy() for t, r in zip(spec.outputs, result, strict=True)}


def example_step(config, modules: dict, image_sizes, slots: list[int] | None, seed: int = 0) -> ExampleStep:
    """Run every module once on example inputs; ``modules`` maps graph name → (kind, module, dims)."""
    rng = np.random.default_rng(seed)
    step = ExampleStep()

    def run(kind: str, name: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        spec = GRAPH_SPECS[kind]
        outputs = run_torch_graph(modules[name][1], kind, feeds)
        if name not in step.inputs:  # the first occurrence (denoising step 0) is the example
            step.inputs[name] = {t.name: feeds[t.name] for t in spec.inputs}
            step.outputs[name] = outputs
        return outputs

    # vision: every vision graph on a batch of its own size
    embeds_by_size = {}
    for name, (kind, _, dims) in modules.items():
        if kind == "vision":
            images = rng.integers(0, 256, size=(EXAMPLE_IMAGES, dims["h"], dims["w"], 3), dtype=np.uint8)
            embeds_by_size[(dims["h"], dims["w"])] = run(kind, name, {"images": images})["image_embeds"]

    n_slots = len(slots) if slots else config.max_num_embodiments
    head_values = {
        "state": rng.standard_normal((EXAMPLE_BATCH, 1, config.max_state_dim)).astype(np.float32),
        "embodiment_id": np.array([0, min(1, n_slots - 1)], dtype=np.int64),
        CARRY_START: rng.standard_normal(
            (EXAMPLE_BATCH, config.action_horizon, config.max_action_dim)).astype(np.float32),
    }
    if "backbone" not in modules:  # the action head alone: example backbone features
        from .action_head_graphs import example_masks

        image_mask, attention_mask = (m.numpy() for m in example_masks(EXAMPLE_BATCH, EXAMPLE_TEXT))
        features = rng.standard_normal((EXAMPLE_BATCH, EXAMPLE_TEXT, config.backbone_embedding_dim)).astype(np.float32)
        values = {"backbone_features": features, "image_mask": image_mask, "attention_mask": attention_mask,
                  **head_values}
        evaluate(run, values, steps=config.num_inference_timesteps, start="dit_context")
        return step

    # the rest of the chain: each sample holds one image of the first size amid text, sample 2 right-padded
    first = embeds_by_size[tuple(image_sizes[0])]  # [n, t, E]
    tokens_per_image = first.shape[1]
    seq = EXAMPLE_TEXT + tokens_per_image
    image_token = config.backbone.image_token_index
    input_ids = rng.integers(0, image_token, size=(EXAMPLE_BATCH, seq), dtype=np.int64)
    start = 7
    input_ids[:, start : start + tokens_per_image] = image_token
    attention_mask = np.ones((EXAMPLE_BATCH, seq), dtype=bool)
    attention_mask[1, -RIGHT_PAD:] = False
    image_mask = input_ids == image_token
    image_index = np.zeros((EXAMPLE_BATCH, seq), dtype=np.int64)
    image_index[image_mask] = np.arange(int(image_mask.sum()))
    values = {
        "input_ids": input_ids,
        "image_embeds": first[:EXAMPLE_BATCH].reshape(-1, first.shape[-1]),  # [T = B·t, E]
        "image_index": image_index,
        "attention_mask": attention_mask,
        "image_mask": image_mask,
        **head_values,
    }
    assert set(external_inputs("backbone")) <= set(values), "the example lacks a declared input"
    evaluate(run, values, steps=config.num_inference_timesteps, start="backbone")
    return step
