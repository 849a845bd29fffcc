"""The whole GR00T N1.6 policy network and its reference (unoptimised) ``get_action``.

``Gr00tN1d6`` has exactly the checkpoint's two top-level modules, ``backbone`` and ``action_head``, so
its ``state_dict()`` keys are the checkpoint's keys minus the known-unused ones. The reference path
computes what the original computes, in the module's dtype, and is the oracle every exported graph
and engine is verified against.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...base.errors import ObservationError
from ...model.action_head import Gr00tActionHead
from .backbone import EagleBackbone
from .config import Gr00tConfig


@dataclass
class ReferenceOutput:
    """Intermediate and final tensors of one reference control step (all float32).

    image_embeds [T, E] (rows in LLM order), backbone_features [B, S, E] (post-final-norm),
    action_pred [B, H, Da] (normalised, padded action space).
    """

    image_embeds: torch.Tensor
    backbone_features: torch.Tensor
    action_pred: torch.Tensor


class Gr00tN1d6(nn.Module):
    """GR00T N1.6: Eagle backbone + flow-matching DiT action head (inference only)."""

    def __init__(self, config: Gr00tConfig, attn_implementation: str = "sdpa"):
        super().__init__()
        self.config = config
        self.backbone = EagleBackbone(config, attn_implementation=attn_implementation)
        self.action_head = Gr00tActionHead(config)
        self.eval()

    @property
    def dtype(self) -> torch.dtype:
        return self.backbone.dtype

    def encode_images(self, images: list[torch.Tensor]) -> torch.Tensor:
        """uint8 images [h, w, 3] in LLM order (sizes may differ) → image_embeds [Σ t_i, E].

        Images of equal size are encoded together (attention stays within each image either way),
        then their token rows are put back in the given order.
        """
        if not isinstance(images, (list, tuple)):
            raise ObservationError(
                f"images: expected a list of uint8 [h, w, 3] tensors, got {type(images).__name__}"
            )
        width = self.config.backbone.text.hidden_size
        if not images:
            return torch.zeros(0, width, dtype=self.dtype)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images):
            if not isinstance(image, torch.Tensor) or image.ndim != 3:
                got = list(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
                raise ObservationError(f"images[{i}]: expected a uint8 tensor [h, w, 3], got {got}")
            groups.setdefault(tuple(image.shape), []).append(i)
        per_image: list[torch.Tensor | None] = [None] * len(images)
        for indices in groups.values():
            embeds = self.backbone.encode_images(torch.stack([images[i] for i in indices]))  # [n_g, t_g, E]
            for row, i in enumerate(indices):
                per_image[i] = embeds[row]
        return torch.cat(per_image, dim=0)  # [Σ t_i, E]

    @torch.no_grad()
    def reference_get_action(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        images: list[torch.Tensor],
        state: torch.Tensor,
        embodiment_id: torch.Tensor,
        noise: torch.Tensor,
    ) -> ReferenceOutput:
        """One control step as the original computes it.

        input_ids int64 [B, S] and attention_mask bool [B, S] (left padded), images uint8 [h, w, 3]
        in LLM order, state [B, 1, Ds] (normalised, padded), embodiment_id int64 [B], initial noise
        [B, H, Da]. Runs in the module's dtype; returns float32 tensors.
        """
        dtype = self.dtype
        image_embeds = self.encode_images(images)  # [T, E]
        features = self.backbone(input_ids, image_embeds, attention_mask)  # [B, S, E]
        image_mask = input_ids == self.config.backbone.image_token_index  # [B, S]
        action = self.action_head.reference_denoise(
            features, image_mask, attention_mask, state.to(dtype), embodiment_id, noise.to(dtype)
        )
        return ReferenceOutput(
            image_embeds=image_embeds.float(), backbone_features=features.float(), action_pred=action.float()
        )
