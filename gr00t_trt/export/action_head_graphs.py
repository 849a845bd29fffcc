"""The five action-head graphs as torch modules, and valid dummy inputs for exporting them.

``action_head_graph_modules`` builds every wrapper from one loaded ``Gr00tActionHead``; chaining them
(dit_context, state_encoder, then N × action_encoder → dit → action_decoder) reproduces
``Gr00tActionHead.reference_denoise`` to float rounding (tests/export/test_action_head_graphs.py).
"""

from __future__ import annotations

import torch
from torch import nn

from ..base.errors import ExportError
from ..contract.dataflow import Contract
from ..families.registry import DEFAULT_FAMILY
from ..model.action_head import Gr00tActionHead, check_embodiment_slots, cross_block_indices
from ..model.config import ActionHeadConfig
from .action_decoder import ActionDecoderGraph
from .action_encoder import ActionEncoderGraph
from .dit import DitGraph
from .dit_context import DitContextGraph, mask_bias
from .state_encoder import StateEncoderGraph

#: kind -> its wrapper built from (head, embodiment slots, dtype), in the order a control step runs them
WRAPPERS = {
    "dit_context": lambda head, slots, dtype: DitContextGraph(head, dtype),
    "state_encoder": lambda head, slots, dtype: StateEncoderGraph(head, slots, dtype),
    "action_encoder": lambda head, slots, dtype: ActionEncoderGraph(head, slots, dtype),
    "dit": lambda head, slots, dtype: DitGraph(head, dtype),
    "action_decoder": lambda head, slots, dtype: ActionDecoderGraph(head, slots, dtype),
}
#: the graphs of the action head (everything after the backbone)
ACTION_HEAD_KINDS = tuple(WRAPPERS)

#: smallest example sequence that still holds padding, text and image positions in every sample
MIN_EXAMPLE_SEQ_LEN = 6


def action_head_graph_modules(
    head: Gr00tActionHead, embodiment_slots: list[int] | None = None, dtype: torch.dtype | None = None,
    kinds=None,
) -> dict[str, nn.Module]:
    """kind → wrapper module, in ``ACTION_HEAD_KINDS`` order, weights in ``dtype`` (default: the head's);
    only the action-head kinds among ``kinds`` when given.

    The wrappers share the head's weight storage where no slicing or cast is needed, but own their
    parameters: casting a wrapper (``.half()``) never changes the head.
    """
    slots = check_embodiment_slots(embodiment_slots, head.config.max_num_embodiments)
    wanted = ACTION_HEAD_KINDS if kinds is None else [k for k in ACTION_HEAD_KINDS if k in set(kinds)]
    return {kind: WRAPPERS[kind](head, slots, dtype).eval() for kind in wanted}


def example_masks(batch: int, seq_len: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(image_mask, attention_mask) bool [B, S]: the middle third are image tokens, sample b is left-padded
    by min(b, S/3 − 1) positions, so every sample attends to both text and image positions."""
    if seq_len < MIN_EXAMPLE_SEQ_LEN:
        raise ExportError(f"example seq_len {seq_len} — expected at least {MIN_EXAMPLE_SEQ_LEN}")
    positions = torch.arange(seq_len, device=device)  # [S]
    in_middle = (positions >= seq_len // 3) & (positions < 2 * seq_len // 3)  # [S]
    image_mask = in_middle.expand(batch, seq_len)  # [S] -> [B, S]
    pad = torch.clamp(torch.arange(batch, device=device), max=seq_len // 3 - 1)  # [B]
    attention_mask = positions[None, :] >= pad[:, None]  # [B, S]
    return image_mask.contiguous(), attention_mask


def example_inputs(
    kind: str,
    config: ActionHeadConfig,
    batch: int = 2,
    seq_len: int = 24,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    embodiment_slots: list[int] | None = None,
    seed: int = 0,
    contract: Contract | None = None,
) -> tuple[torch.Tensor, ...]:
    """Random but valid inputs of graph ``kind`` in its declared order (float tensors in ``dtype``).

    Use batch ≥ 2 and a seq_len other than every static dim when exporting, so torch.export keeps B and
    S symbolic. embodiment_id and step cycle through the valid rows/steps. ``contract``: the family's
    (its graph specs give the input order; default ``DEFAULT_FAMILY``'s).
    """
    if kind not in ACTION_HEAD_KINDS:
        raise ExportError(
            f"unknown action-head graph kind {kind!r} — expected one of: {', '.join(ACTION_HEAD_KINDS)}"
        )
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=generator).to(device=device, dtype=dtype)

    c = config
    rows = len(embodiment_slots) if embodiment_slots is not None else c.max_num_embodiments
    heads, head_dim = c.dit.num_attention_heads, c.dit.attention_head_dim
    num_cross = len(cross_block_indices(c))
    image_mask, attention_mask = example_masks(batch, seq_len, device)
    values = {
        "backbone_features": randn(batch, seq_len, c.backbone_embedding_dim),
        "image_mask": image_mask,
        "attention_mask": attention_mask,
        "state": randn(batch, 1, c.max_state_dim),
        "embodiment_id": torch.arange(batch, device=device) % rows,
        "actions": randn(batch, c.action_horizon, c.max_action_dim),
        "step": torch.arange(batch, device=device) % c.num_inference_timesteps,
        "state_features": randn(batch, 1, c.input_embedding_dim),
        "action_features": randn(batch, c.action_horizon, c.input_embedding_dim),
        "cross_k": randn(num_cross, batch, heads, seq_len, head_dim),
        "cross_v": randn(num_cross, batch, heads, seq_len, head_dim),
        "text_bias": mask_bias(~image_mask & attention_mask, dtype),
        "image_bias": mask_bias(image_mask & attention_mask, dtype),
        "dit_out": randn(batch, c.action_horizon, c.hidden_size),
        "step_weight": torch.rand(batch, c.action_horizon, generator=generator).to(device=device, dtype=dtype),
    }
    specs = (contract or DEFAULT_FAMILY.runtime().CONTRACT).graphs
    return tuple(values[t.name] for t in specs[kind].inputs)
