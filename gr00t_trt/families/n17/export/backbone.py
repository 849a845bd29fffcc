"""``backbone`` graph: token ids + image embeddings + DeepStack features → pre-norm LLM features
(``contract.BACKBONE``).

The reference's decoder (``BackboneGraph.decode``: interleaved M-RoPE from the host's position ids, the
hand-built causal + padding mask, padding queries zeroed, no final norm), with the image rows placed
and the DeepStack features added by Gather + Where instead of boolean indexing: ``image_index`` names
the row of ``image_embeds`` (and of each DeepStack feature) for every position and is ignored where the
token is not ``<|image_pad|>`` — no NonZero, no data-dependent shapes. Needs at least one image row
(T ≥ 1); a prompt without images passes one dummy row.
"""

from __future__ import annotations

import torch
from torch import nn

from ....model.holder import Holder
from ..backbone import BackboneGraph
from ..config import N17Config
from .weights import detached


class N17BackboneGraph(nn.Module):
    """(input_ids, image_embeds, deepstack_0..k, image_index, position_ids, attention_mask) → backbone_features."""

    def __init__(self, language_model: nn.Module, config: N17Config, dtype: torch.dtype | None = None):
        super().__init__()
        self.image_token_id = config.backbone.image_token_id
        parts = Holder(embed_tokens=language_model.embed_tokens, layers=language_model.layers)  # not the norm
        self.decoder = BackboneGraph(detached(parts, dtype), config)
        # M-RoPE rounding of the model the wrapper was built from (spec §3.9), kept through later casts
        self.rope_dtype = language_model.embed_tokens.weight.dtype

    def forward(self, input_ids: torch.Tensor, image_embeds: torch.Tensor, deepstack_0: torch.Tensor,
                deepstack_1: torch.Tensor, deepstack_2: torch.Tensor, image_index: torch.Tensor,
                position_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        deepstack = (deepstack_0, deepstack_1, deepstack_2)  # contract.DEEPSTACK, added after layers 0-2
        embeds = self.decoder.llm.embed_tokens(input_ids)  # [B, S, E]
        rows = image_index.clamp(min=0, max=image_embeds.shape[0] - 1).reshape(-1)  # [B·S], any value is safe
        is_image = (input_ids == self.image_token_id)[..., None]  # [B, S, 1]

        def placed(table: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
            return torch.index_select(table, 0, rows).reshape(embeds.shape).to(dtype)  # [B, S, E]

        def add_deepstack(x: torch.Tensor, index: int) -> torch.Tensor:
            return torch.where(is_image, x + placed(deepstack[index], x.dtype), x)

        x = torch.where(is_image, placed(image_embeds, embeds.dtype), embeds)
        return self.decoder.decode(x, position_ids, attention_mask, add_deepstack, len(deepstack), self.rope_dtype)
