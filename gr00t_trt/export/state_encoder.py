"""``state_encoder`` graph: the state token, once per control step (CategorySpecificMLP)."""

from __future__ import annotations

import torch
from torch import nn

from ..model.action_head import Gr00tActionHead, check_embodiment_slots


class StateEncoderGraph(nn.Module):
    """(state [B, 1, Ds], embodiment_id [B]) → (state_features [B, 1, C],).

    ``embodiment_slots``: None keeps all E embodiment rows (embodiment_id is the real id); a list keeps
    those ids' rows in that order and embodiment_id is then the slot index 0..len−1.
    """

    def __init__(
        self,
        head: Gr00tActionHead,
        embodiment_slots: list[int] | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        self.embodiment_slots = check_embodiment_slots(embodiment_slots, head.config.max_num_embodiments)
        self.state_encoder = head.state_encoder.select(self.embodiment_slots, dtype or head.dtype)

    def forward(self, state: torch.Tensor, embodiment_id: torch.Tensor):
        return (self.state_encoder(state, embodiment_id),)  # [B, 1, C]
