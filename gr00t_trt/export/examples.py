"""One realistic example control step through the torch graph wrappers.

Export needs example inputs for every graph, and validation needs the PyTorch outputs for them. Rather
than inventing each graph's inputs separately, this chains the wrappers exactly as the runtime does
(vision → backbone → dit_context → state_encoder → action_encoder → dit → action_decoder), so masks,
K/V and biases are the kind of values the graphs will really see. Example sizes are chosen distinct from
each other and from every static dim, and batch 2, so torch.export keeps them symbolic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..graphs import GRAPH_SPECS

EXAMPLE_BATCH = 2
EXAMPLE_IMAGES = 3  # images in the example vision call (dim n)
EXAMPLE_TEXT = 23  # text tokens per sample besides the image tokens
RIGHT_PAD = 5  # padded positions at the end of the second sample


@dataclass
class ExampleStep:
    inputs: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    outputs: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def _run(step: ExampleStep, name: str, kind: str, module: torch.nn.Module, feeds: dict[str, np.ndarray]):
    spec = GRAPH_SPECS[kind]
    args = [torch.from_numpy(np.ascontiguousarray(feeds[t.name])) for t in spec.inputs]
    with torch.no_grad():
        result = module(*args)
    if isinstance(result, torch.Tensor):
        result = (result,)
    step.inputs[name] = {t.name: feeds[t.name] for t in spec.inputs}
    step.outputs[name] = {t.name: r.detach().float().numpy() for t, r in zip(spec.outputs, result, strict=True)}
    return step.outputs[name]


def example_step(config, modules: dict, image_sizes, slots: list[int] | None, seed: int = 0) -> ExampleStep:
    """Run every module once on example inputs; ``modules`` maps graph name → (kind, module, dims)."""
    rng = np.random.default_rng(seed)
    step = ExampleStep()
    embeds_by_size = {}
    for name, (kind, module, dims) in modules.items():
        if kind != "vision":
            continue
        images = rng.integers(0, 256, size=(EXAMPLE_IMAGES, dims["h"], dims["w"], 3), dtype=np.uint8)
        out = _run(step, name, kind, module, {"images": images})
        embeds_by_size[(dims["h"], dims["w"])] = out["image_embeds"]

    # backbone: each sample holds one image of the first size (its tokens) amid text, sample 2 right-padded
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
    image_embeds = first[:EXAMPLE_BATCH].reshape(-1, first.shape[-1])  # [T = B·t, E]
    image_index = np.zeros((EXAMPLE_BATCH, seq), dtype=np.int64)
    image_index[image_mask] = np.arange(int(image_mask.sum()))
    backbone = _run(
        step,
        "backbone",
        "backbone",
        modules["backbone"][1],
        {"input_ids": input_ids, "image_embeds": image_embeds, "image_index": image_index, "attention_mask": attention_mask},
    )

    context = _run(
        step,
        "dit_context",
        "dit_context",
        modules["dit_context"][1],
        {"backbone_features": backbone["backbone_features"], "image_mask": image_mask, "attention_mask": attention_mask},
    )
    n_slots = len(slots) if slots else config.max_num_embodiments
    embodiment_id = np.array([0, min(1, n_slots - 1)], dtype=np.int64)
    state = rng.standard_normal((EXAMPLE_BATCH, 1, config.max_state_dim)).astype(np.float32)
    state_out = _run(
        step, "state_encoder", "state_encoder", modules["state_encoder"][1], {"state": state, "embodiment_id": embodiment_id}
    )
    actions = rng.standard_normal((EXAMPLE_BATCH, config.action_horizon, config.max_action_dim)).astype(np.float32)
    steps = np.array([0, min(1, config.num_inference_timesteps - 1)], dtype=np.int64)
    encoded = _run(
        step,
        "action_encoder",
        "action_encoder",
        modules["action_encoder"][1],
        {"actions": actions, "step": steps, "embodiment_id": embodiment_id},
    )
    dit = _run(
        step,
        "dit",
        "dit",
        modules["dit"][1],
        {
            "state_features": state_out["state_features"],
            "action_features": encoded["action_features"],
            **{k: context[k] for k in ("cross_k", "cross_v", "text_bias", "image_bias")},
            "step": steps,
        },
    )
    _run(
        step,
        "action_decoder",
        "action_decoder",
        modules["action_decoder"][1],
        {"dit_out": dit["dit_out"], "actions": actions, "embodiment_id": embodiment_id},
    )
    return step
