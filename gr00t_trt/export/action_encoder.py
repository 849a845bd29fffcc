"""``action_encoder`` graph: noisy actions → action tokens, with the timestep half of W2 precomputed.

The original computes W2 on the concatenation [W1(x), PE(τ)] (width 2C). Splitting W2's input rows into
W2_a (action half) and W2_t (timestep half) gives

    W2([a, PE(τ)]) = a @ W2_a[e] + (PE(τ) @ W2_t[e] + b2[e]),

and the bracket depends only on (embodiment, step): it is a table [E', N, C], computed here once in
float64 from the fp32 weights (the sinusoid itself in fp32, exactly as the original evaluates it) and
stored in the wrapper's dtype. The graph reads W2_a (C×C) instead of W2 (2C×C) and no sinusoid remains.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..model.action_head import Gr00tActionHead, action_time_sinusoid, check_embodiment_slots


class ActionEncoderGraph(nn.Module):
    """(actions [B, H, Da], step int64 [B], embodiment_id [B]) → (action_features [B, H, C],).

    ``step`` is the denoising step index k in 0..N−1 (not the timestep value τ_k); the returned
    features include the position embedding rows 0..H−1. ``embodiment_slots`` as in StateEncoderGraph.
    """

    def __init__(
        self,
        head: Gr00tActionHead,
        embodiment_slots: list[int] | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        config = head.config
        dtype = dtype or head.dtype
        dim, steps = config.input_embedding_dim, config.num_inference_timesteps
        self.embodiment_slots = check_embodiment_slots(embodiment_slots, config.max_num_embodiments)
        self.num_steps = steps
        encoder = head.action_encoder
        self.W1 = encoder.W1.select(self.embodiment_slots, dtype)
        self.W3 = encoder.W3.select(self.embodiment_slots, dtype)
        w2 = encoder.W2.select(self.embodiment_slots)  # detached [E', 2C, C], [E', C]
        self.W2_action = nn.Parameter(w2.W[:, :dim].to(dtype), requires_grad=False)  # [E', C, C]
        self.register_buffer("time_table", _time_table(head, w2).flatten(0, 1).to(dtype))  # [E'·N, C]
        positions = head.position_embedding.weight.detach()[: config.action_horizon]  # [H, C]
        self.register_buffer("position_embedding", positions.to(dtype))

    def forward(self, actions: torch.Tensor, step: torch.Tensor, embodiment_id: torch.Tensor):
        action_emb = self.W1(actions, embodiment_id)  # [B, H, C]
        row = embodiment_id * self.num_steps + step  # [B]: (slot, step) in the flattened table
        time = self.time_table.index_select(0, row)  # [B, C] = PE(τ_k) @ W2_t[e] + b2[e]
        w2_action = self.W2_action.index_select(0, embodiment_id)  # [B, C, C]
        x = torch.bmm(action_emb, w2_action) + time[:, None, :]  # [B, H, C]
        x = self.W3(F.silu(x), embodiment_id)  # [B, H, C]
        return (x + self.position_embedding,)  # + rows 0..H−1, broadcast over B


@torch.no_grad()
def _time_table(head: Gr00tActionHead, w2) -> torch.Tensor:
    """PE(τ_k) @ W2_t[e] + b2[e] for every kept embodiment e and step k, float64 [E', N, C]."""
    dim, steps = head.config.input_embedding_dim, head.config.num_inference_timesteps
    timesteps = torch.cat([head.timestep(k, 1) for k in range(steps)])  # [N] int64: τ_0..τ_{N−1}
    code = action_time_sinusoid(timesteps, dim).double()  # [N, C], fp32 as the original, then exact algebra
    w2_time = w2.W[:, dim:].double()  # [E', C, C]: rows of W2 that multiply PE(τ)
    return torch.einsum("nc,ecd->end", code, w2_time) + w2.b.double()[:, None, :]  # [E', N, C]
