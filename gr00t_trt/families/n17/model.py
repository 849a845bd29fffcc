"""GR00T N1.7 (``Gr00tN1d7``) in plain PyTorch: the reference every N1.7 graph is verified against, and
the strict loader of a checkpoint folder.

Module tree = checkpoint keys: ``backbone.model.model`` is transformers' ``Qwen3VLModel`` (vision tower
+ text model truncated to ``select_layer`` layers; no ``lm_head``, which the loader skips by name) and
``action_head`` is N1.6's action head at N1.7's widths plus the VL self-attention. The forward is split
as the exported graphs are: ``vision`` (one graph per image size), ``backbone`` (pre-norm LLM
features), ``dit_context`` (VLLN + VL self-attention), then N1.6's state encoder / action encoder /
DiT step / decoder, driven by N1.6's reference sampler.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ...base.errors import CheckpointError, ObservationError
from ...model.action_head import Gr00tActionHead
from ...model.checkpoint import (
    LazyModel,
    load_state_dict,
    parameters_on_meta,
    read_tensor_index,
    resolve_checkpoint,
)
from ...model.holder import Holder
from .backbone import BackboneGraph
from .config import N17Config, read_config
from .layout import check_layout
from .vision import VisionGraph
from .vl_attention import VLSelfAttention

ATTN_IMPLEMENTATIONS = ("sdpa", "eager")


def qwen3_vl_config(config: N17Config, attn_implementation: str = "sdpa"):
    """transformers ``Qwen3VLConfig`` of the backbone, with only the kept LLM layers."""
    from transformers import Qwen3VLConfig

    b = config.backbone
    v, t = b.vision, b.text
    vision = dict(depth=v.depth, hidden_size=v.hidden_size, intermediate_size=v.intermediate_size, num_heads=v.num_heads,
                  in_channels=v.in_channels, patch_size=v.patch_size, temporal_patch_size=v.temporal_patch_size,
                  spatial_merge_size=v.spatial_merge_size, out_hidden_size=v.out_hidden_size,
                  num_position_embeddings=v.num_position_embeddings, hidden_act=v.hidden_act,
                  deepstack_visual_indexes=list(v.deepstack_visual_indexes),
                  rope_parameters={"rope_type": "axial", "rope_theta": v.rope_theta})  # fmt: skip
    text = dict(vocab_size=t.vocab_size, hidden_size=t.hidden_size, intermediate_size=t.intermediate_size,
                num_hidden_layers=config.select_layer, num_attention_heads=t.num_attention_heads,
                num_key_value_heads=t.num_key_value_heads, head_dim=t.head_dim, hidden_act=t.hidden_act,
                rms_norm_eps=t.rms_norm_eps, max_position_embeddings=t.max_position_embeddings, attention_bias=False,
                rope_parameters={"rope_type": "default", "rope_theta": t.rope_theta,
                                 "mrope_section": list(t.mrope_section), "mrope_interleaved": True})  # fmt: skip
    hf = Qwen3VLConfig(vision_config=vision, text_config=text, image_token_id=b.image_token_id,
                       video_token_id=b.video_token_id, vision_start_token_id=b.vision_start_token_id,
                       vision_end_token_id=b.vision_end_token_id, tie_word_embeddings=False)  # fmt: skip
    for sub in (hf, hf.vision_config, hf.text_config):
        sub._attn_implementation = attn_implementation
    return hf


class N17ActionHead(Gr00tActionHead):
    """N1.6's action head (config duck-typed: same field names) plus the VL self-attention, which
    ``encode_context`` applies after VLLN, once per control step."""

    def __init__(self, config: N17Config):
        super().__init__(config)
        self.vl_self_attention = VLSelfAttention(config.backbone_embedding_dim, config.vl_self_attention)

    def encode_context(self, backbone_features: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """VL self-attention(VLLN(features)) [B, S, E]; no mask in the original (padding attended)."""
        return self.vl_self_attention(self.vlln(backbone_features.to(self.dtype)), attention_mask)


@dataclass
class ReferenceOutput:
    """Intermediates and result of one reference control step (float32)."""

    image_embeds: torch.Tensor  # [T, E], rows in LLM order
    deepstack: torch.Tensor  # [k, T, E]
    backbone_features: torch.Tensor  # [B, S, E], before the final norm
    vl_embeds: torch.Tensor  # [B, S, E], VL self-attention output
    action_pred: torch.Tensor  # [B, H, Da], normalised and padded


class Gr00tN1d7(nn.Module):
    """GR00T N1.7: Qwen3-VL backbone + VL self-attention + flow-matching DiT (inference only)."""

    def __init__(self, config: N17Config, attn_implementation: str = "sdpa"):
        super().__init__()
        from transformers import Qwen3VLModel

        if attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise ValueError(f"attn_implementation {attn_implementation!r} — expected one of {ATTN_IMPLEMENTATIONS}")
        self.config = config
        self.backbone = Holder(model=Holder(model=Qwen3VLModel(qwen3_vl_config(config, attn_implementation))))
        self.action_head = N17ActionHead(config)
        self.eval()

    @property
    def qwen(self) -> nn.Module:
        """The transformers ``Qwen3VLModel`` (``.visual``, ``.language_model``)."""
        return self.backbone.model.model

    @property
    def dtype(self) -> torch.dtype:
        return self.qwen.visual.pos_embed.weight.dtype

    # ---------------------------------------------------------------- the graphs
    def vision(self, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pixel_values [ΣP, 1536] (merge-block order, images in LLM order), image_grid_thw int [n, 3] rows
        (1, gh, gw) → image_embeds [T, E] and deepstack [k, T, E], rows in LLM order. Images of one size
        run as one batch of the vision graph of that size."""
        grids = [tuple(int(d) for d in row) for row in image_grid_thw.tolist()]
        if any(t != 1 for t, _, _ in grids) or sum(h * w for _, h, w in grids) != pixel_values.shape[0]:
            raise ObservationError(f"image_grid_thw {grids} does not describe pixel_values {list(pixel_values.shape)} — "
                                   "expected rows (1, gh, gw) whose gh·gw sum to the patch rows")
        graph = VisionGraph(self.qwen.visual, self.config)
        starts = torch.tensor([0] + [h * w for _, h, w in grids]).cumsum(0).tolist()
        merge2 = self.config.backbone.vision.spatial_merge_size ** 2
        embeds: list = [None] * len(grids)
        stacks: list = [None] * len(grids)
        for size in dict.fromkeys(g[1:] for g in grids):
            members = [i for i, g in enumerate(grids) if g[1:] == size]
            patches = torch.cat([pixel_values[starts[i]:starts[i + 1]] for i in members])
            out, deep = graph(patches.to(self.dtype), *graph.tables(*size))
            tokens = size[0] * size[1] // merge2
            for j, i in enumerate(members):
                embeds[i], stacks[i] = out[j * tokens:(j + 1) * tokens], deep[:, j * tokens:(j + 1) * tokens]
        return torch.cat(embeds), torch.cat(stacks, dim=1)

    def backbone_features(self, input_ids, image_embeds, deepstack, position_ids, attention_mask) -> torch.Tensor:
        """Pre-norm LLM features [B, S, E] (see ``BackboneGraph``)."""
        return BackboneGraph(self.qwen.language_model, self.config)(
            input_ids, image_embeds, deepstack, position_ids, attention_mask)

    def dit_context(self, backbone_features: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """VLLN + VL self-attention → vl_embeds [B, S, E], the DiT's cross-attention context."""
        return self.action_head.encode_context(backbone_features, attention_mask)

    # ---------------------------------------------------------------- one control step
    @torch.no_grad()
    def reference_get_action(self, input_ids, attention_mask, position_ids, pixel_values, image_grid_thw, state,
                             embodiment_id, noise) -> ReferenceOutput:
        """One control step as the original computes it, in the module's dtype.

        input_ids int64 [B, S] and attention_mask bool [B, S] (left padded), position_ids int64 [3, B, S]
        (get_rope_index; padding positions 1), pixel_values/image_grid_thw as ``vision``, state
        [B, 1, 132] normalised and padded, embodiment_id int64 [B], noise [B, H, Da].
        """
        image_embeds, deepstack = self.vision(pixel_values, image_grid_thw)
        features = self.backbone_features(input_ids, image_embeds, deepstack, position_ids, attention_mask)
        image_mask = input_ids == self.config.backbone.image_token_id
        vl = self.dit_context(features)
        action = self.action_head.reference_denoise(features, image_mask, attention_mask, state.to(self.dtype),
                                                    embodiment_id, noise.to(self.dtype))
        return ReferenceOutput(image_embeds.float(), deepstack.float(), features.float(), vl.float(), action.float())


# ---------------------------------------------------------------------- loading
def open_model(checkpoint: str | Path, dtype: torch.dtype = torch.float32, *, attn_implementation: str = "sdpa",
               local_files_only: bool = False) -> tuple[LazyModel, N17Config, Path]:
    """Gr00tN1d7 built on the meta device from a checkpoint's config, every tensor accounted for (one-line
    CheckpointError otherwise) but none read → (LazyModel, config, folder): an export reads one graph's
    weights at a time through ``LazyModel.loaded``; ``load_model`` reads them all."""
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise CheckpointError(f"load_model: dtype {dtype} — expected torch.float32, torch.bfloat16 or torch.float16")
    folder = resolve_checkpoint(checkpoint, local_files_only=local_files_only)
    config = read_config(folder)
    index = read_tensor_index(folder)
    skipped = set(check_layout(index, config, source=f"checkpoint {folder}"))
    with parameters_on_meta():
        model = Gr00tN1d7(config, attn_implementation=attn_implementation)
    model.to(dtype).requires_grad_(False).eval()  # the original's model.to(dtype), buffers included (§3.9)
    return LazyModel(model, folder, index, [k for k in index if k not in skipped], dtype), config, folder


def load_model(checkpoint: str | Path, dtype: torch.dtype = torch.float32, *, attn_implementation: str = "sdpa",
               local_files_only: bool = False) -> tuple[Gr00tN1d7, N17Config, Path]:
    """Gr00tN1d7 from a checkpoint folder or Hub id → (model in eval mode, config, folder).

    Every tensor is accounted for before any is read; ``lm_head`` is skipped; parameters are read in
    ``dtype`` and the model is cast with ``.to(dtype)`` as the original's policy does (the RoPE tables
    follow that dtype's rounding, spec §3.9).
    """
    lazy, config, folder = open_model(checkpoint, dtype, attn_implementation=attn_implementation,
                                      local_files_only=local_files_only)
    lazy.model.load_state_dict(load_state_dict(folder, lazy.index, lazy.keys, dtype), strict=True, assign=True)
    return lazy.model, config, folder
