"""``action_decoder`` graph: velocity from the DiT output and the Euler update of one denoising step."""

from __future__ import annotations

import torch
from torch import nn

from ..model.action_head import Gr00tActionHead, check_embodiment_slots, euler_update


class ActionDecoderGraph(nn.Module):
    """(dit_out [B, H, O], actions [B, H, Da], embodiment_id [B], step_weight [B, H]) → (next_actions [B, H, Da],).

    next_actions = actions + (dt·velocity)·step_weight with dt = 1/N a constant of the graph (N = the
    config's num_inference_timesteps at construction). The per-row weight is a host input so prefix
    conditioning (real-time chunking: 0 on frozen rows, a ramp over the rest of the overlap) runs in the
    recorded programs; a weight of 1 multiplies exactly, so the plain sampler's bits are unchanged. The DiT graph already kept only the H action positions,
    so no slicing happens here (the decoder is token-wise, so this equals decoding 1+H and slicing).
    """

    def __init__(
        self,
        head: Gr00tActionHead,
        embodiment_slots: list[int] | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        self.embodiment_slots = check_embodiment_slots(embodiment_slots, head.config.max_num_embodiments)
        self.action_decoder = head.action_decoder.select(self.embodiment_slots, dtype or head.dtype)
        self.dt = 1.0 / head.config.num_inference_timesteps

    def forward(self, dit_out: torch.Tensor, actions: torch.Tensor, embodiment_id: torch.Tensor,
                step_weight: torch.Tensor | None = None):
        velocity = self.action_decoder(dit_out, embodiment_id)  # [B, H, Da]
        return (euler_update(actions, self.dt * velocity, step_weight),)

