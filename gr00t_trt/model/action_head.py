"""The GR00T action head both families share (checkpoint prefix ``action_head.``), written from spec §4.

A flow-matching policy: a state token and H noisy action tokens go through a 32-block DiT that
cross-attends to the (VLLN-normalised) backbone features, and N Euler steps turn Gaussian noise into a
normalised action chunk. Attribute names equal the checkpoint's keys (spec §2.4), every size comes from
the config (``ActionHeadConfig``), and ``reference_denoise`` is the unoptimised sampler exactly as the original computes it:
the oracle that every exported graph is verified against.

Sizes in the shape comments: B batch, S backbone tokens, E backbone width, H action horizon, Ds/Da
state/action dims, C DiT width, O DiT output width (= hidden_size), Hc heads, Dh head dim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..base.errors import EmbodimentError, ObservationError
from .config import ActionHeadConfig

#: LayerNorm eps of the VLLN, of AdaLayerNorm and of the feed-forward pre-norm (norm3)
NORM_EPS = 1e-5
#: ``max_period`` of both sinusoids
MAX_PERIOD = 10000.0


# ------------------------------------------------------------------------------------------ sinusoids
def action_time_sinusoid(timesteps: torch.Tensor, dim: int) -> torch.Tensor:
    """Timestep code of the action encoder: [sin(τ·ω), cos(τ·ω)] with ω_k = 10000^(−k/(dim/2)).

    Sine half first; the frequency divisor is half_dim (768 for C = 1536). Always computed in fp32,
    as the original does before casting to the activations' dtype. [...] → [..., dim].
    """
    half = dim // 2
    k = torch.arange(half, dtype=torch.float32, device=timesteps.device)
    freqs = torch.exp(k * -(math.log(MAX_PERIOD) / half))  # [half]
    angles = timesteps.to(torch.float32)[..., None] * freqs  # [..., half]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)  # [..., dim]


def dit_time_sinusoid(timesteps: torch.Tensor, dim: int) -> torch.Tensor:
    """Timestep code of the DiT (diffusers ``Timesteps(dim, flip_sin_to_cos=True, downscale_freq_shift=1)``):
    [cos(τ·ν), sin(τ·ν)] with ν_k = 10000^(−k/(dim/2 − 1)).

    Cosine half first (the flip); the divisor is half_dim − 1 (127 for 256 channels). fp32. [B] → [B, dim].
    """
    half = dim // 2
    k = torch.arange(half, dtype=torch.float32, device=timesteps.device)
    freqs = torch.exp(-math.log(MAX_PERIOD) * k / (half - 1))  # [half]
    angles = timesteps.to(torch.float32)[:, None] * freqs[None, :]  # [B, half]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)  # [B, dim]


def modulate(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """x·(1 + scale) + shift with per-sample scale/shift [B, C] broadcast over tokens of x [B, T, C]."""
    return x * (1 + scale[:, None, :]) + shift[:, None, :]


# ------------------------------------------------------------------------------------------ embodiment MLPs
class CategorySpecificLinear(nn.Module):
    """One linear layer per embodiment: y[b] = x[b] @ W[e_b] + b[e_b].

    ``W`` is stored [E, in, out] and multiplied as is (no transpose, unlike nn.Linear).
    """

    def __init__(self, num_categories: int, input_dim: int, output_dim: int):
        super().__init__()
        self.W = nn.Parameter(torch.empty(num_categories, input_dim, output_dim))
        self.b = nn.Parameter(torch.empty(num_categories, output_dim))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """nn.Linear-like uniform init (unit-scale activations); real checkpoints overwrite it."""
        bound = self.W.shape[1] ** -0.5
        self.W.uniform_(-bound, bound)
        self.b.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor, category_ids: torch.Tensor) -> torch.Tensor:
        # index_select exports as ONNX Gather (W[ids] would become GatherND)
        weight = self.W.index_select(0, category_ids)  # [B, in, out]
        bias = self.b.index_select(0, category_ids)  # [B, out]
        return torch.bmm(x, weight) + bias[:, None, :]  # [B, T, out]

    def select(self, slots: list[int] | None, dtype: torch.dtype | None = None) -> CategorySpecificLinear:
        """A detached copy keeping the rows of ``slots`` in that order (None: all rows, storage shared
        when the dtype does not change); the copy is then indexed by slot 0..len(slots)−1."""
        weight, bias = self.W.detach(), self.b.detach()
        if slots is not None:
            index = torch.tensor(slots, dtype=torch.long, device=weight.device)
            weight, bias = weight[index], bias[index]  # [E', in, out], [E', out]
        layer = CategorySpecificLinear.__new__(CategorySpecificLinear)
        nn.Module.__init__(layer)
        layer.W = nn.Parameter(weight.to(dtype or weight.dtype), requires_grad=False)
        layer.b = nn.Parameter(bias.to(dtype or bias.dtype), requires_grad=False)
        return layer


class CategorySpecificMLP(nn.Module):
    """layer2(ReLU(layer1(x))) with embodiment-specific layers."""

    def __init__(self, num_categories: int, input_dim: int, hidden_dim: int, output_dim: int):
        super().__init__()
        self.layer1 = CategorySpecificLinear(num_categories, input_dim, hidden_dim)
        self.layer2 = CategorySpecificLinear(num_categories, hidden_dim, output_dim)

    def forward(self, x: torch.Tensor, category_ids: torch.Tensor) -> torch.Tensor:
        return self.layer2(F.relu(self.layer1(x, category_ids)), category_ids)

    def select(self, slots: list[int] | None, dtype: torch.dtype | None = None) -> CategorySpecificMLP:
        mlp = CategorySpecificMLP.__new__(CategorySpecificMLP)
        nn.Module.__init__(mlp)
        mlp.layer1 = self.layer1.select(slots, dtype)
        mlp.layer2 = self.layer2.select(slots, dtype)
        return mlp


class MultiEmbodimentActionEncoder(nn.Module):
    """Noisy actions + integer timestep → action tokens: W3(swish(W2([W1(x), sincos(τ)])))."""

    def __init__(self, num_categories: int, action_dim: int, hidden_dim: int):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.W1 = CategorySpecificLinear(num_categories, action_dim, hidden_dim)
        self.W2 = CategorySpecificLinear(num_categories, 2 * hidden_dim, hidden_dim)
        self.W3 = CategorySpecificLinear(num_categories, hidden_dim, hidden_dim)

    def forward(
        self, actions: torch.Tensor, timesteps: torch.Tensor, category_ids: torch.Tensor
    ) -> torch.Tensor:
        batch, horizon, _ = actions.shape
        action_emb = self.W1(actions, category_ids)  # [B, H, C]
        per_token = timesteps[:, None].expand(batch, horizon)  # [B] -> [B, H]
        time_emb = action_time_sinusoid(per_token, self.hidden_dim).to(action_emb.dtype)  # [B, H, C]
        x = torch.cat([action_emb, time_emb], dim=-1)  # [B, H, 2C]: action half first
        x = F.silu(self.W2(x, category_ids))  # swish(z) = z·sigmoid(z)
        return self.W3(x, category_ids)  # [B, H, C]


# ------------------------------------------------------------------------------------------ DiT parts
class TimestepEmbedding(nn.Module):
    """diffusers ``TimestepEmbedding``: linear_2(SiLU(linear_1(code)))."""

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(code)))


class TimestepEncoder(nn.Module):
    """Integer timestep τ [B] → conditioning vector temb [B, C], shared by every block and the output."""

    def __init__(self, proj_dim: int, dim: int):
        super().__init__()
        self.proj_dim = proj_dim
        self.timestep_embedder = TimestepEmbedding(proj_dim, dim)

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        code = dit_time_sinusoid(timesteps, self.proj_dim)  # [B, 256] fp32
        return self.timestep_embedder(code.to(self.timestep_embedder.linear_1.weight.dtype))  # [B, C]


class AdaLayerNorm(nn.Module):
    """LayerNorm (no affine) modulated by the timestep: (scale, shift) = split(linear(SiLU(temb))).

    Scale is the FIRST half, shift the second (the output layer uses the opposite order).
    """

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.linear = nn.Linear(dim, 2 * dim)
        self.norm = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)

    def modulation(self, temb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scale, shift = self.linear(F.silu(temb)).chunk(2, dim=-1)  # [B, 2C] -> 2 × [B, C]
        return scale, shift

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.modulation(temb)
        return modulate(self.norm(x), scale, shift)


class Attention(nn.Module):
    """Multi-head attention with biased projections (diffusers ``Attention`` key names).

    ``attention_mask`` is boolean [B, S], True = attend, repeated for every head; without a context the
    block attends to its own (normalised) input. A query whose mask row is all False gets 0 from
    PyTorch's SDPA (≥ 2.5; older versions gave NaN) — the exported graphs reproduce that 0.
    """

    def __init__(self, query_dim: int, context_dim: int, heads: int, head_dim: int):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        inner = heads * head_dim
        self.to_q = nn.Linear(query_dim, inner)
        self.to_k = nn.Linear(context_dim, inner)
        self.to_v = nn.Linear(context_dim, inner)
        self.to_out = nn.ModuleList([nn.Linear(inner, query_dim)])  # to_out.1 (dropout) has no weights

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)  # [B, T, C] -> [B, Hc, T, Dh]

    def forward(
        self,
        hidden_states: torch.Tensor,
        context: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        context = hidden_states if context is None else context
        q = self.split_heads(self.to_q(hidden_states))  # [B, Hc, T, Dh]
        k = self.split_heads(self.to_k(context))  # [B, Hc, S, Dh]
        v = self.split_heads(self.to_v(context))  # [B, Hc, S, Dh]
        mask = None
        if attention_mask is not None:
            mask = attention_mask[:, None, None, :].expand(-1, self.heads, -1, -1)  # [B, S] -> [B, Hc, 1, S]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [B, Hc, T, Dh]
        out = out.transpose(1, 2).flatten(2)  # [B, Hc, T, Dh] -> [B, T, C]
        return self.to_out[0](out)


class GeluProjection(nn.Module):
    """diffusers ``GELU(approximate="tanh")``: a projection followed by tanh-GELU."""

    def __init__(self, dim: int, inner_dim: int):
        super().__init__()
        self.proj = nn.Linear(dim, inner_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x), approximate="tanh")


class FeedForward(nn.Module):
    """net.0 = projection + GELU(tanh), net.1 = dropout, net.2 = output projection (net.3 dropout)."""

    def __init__(self, dim: int, inner_dim: int):
        super().__init__()
        self.net = nn.ModuleList([GeluProjection(dim, inner_dim), nn.Identity(), nn.Linear(inner_dim, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class BasicTransformerBlock(nn.Module):
    """x += attn1(AdaLN(x, temb)); x += ff(LN(x)). Cross blocks take K/V from the backbone features."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int, eps: float):
        super().__init__()
        self.norm1 = AdaLayerNorm(dim, eps)
        self.attn1 = Attention(dim, context_dim, heads, head_dim)
        self.norm3 = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)
        self.ff = FeedForward(dim, 4 * dim)

    def forward(
        self,
        hidden_states: torch.Tensor,
        temb: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        h = self.norm1(hidden_states, temb)  # [B, T, C]
        hidden_states = hidden_states + self.attn1(h, encoder_hidden_states, encoder_attention_mask)
        return hidden_states + self.ff(self.norm3(hidden_states))


def dit_block_kinds(config: ActionHeadConfig) -> tuple[str, ...]:
    """Role of every DiT block: "text" (cross-attention to non-image tokens), "self" (odd blocks, no
    mask) or "image" (cross-attention to image tokens). N1.6: text, self, image, self, text, …"""
    period = 2 * config.attend_text_every_n_blocks
    kinds = []
    for i in range(config.dit.num_layers):
        if i % 2 == 1:
            kinds.append("self")
        else:
            kinds.append("text" if i % period == 0 else "image")
    return tuple(kinds)


def cross_block_indices(config: ActionHeadConfig) -> list[int]:
    """Indices of the cross-attention blocks, in order; position l in this list is the ``L`` index of
    the exported ``cross_k`` / ``cross_v`` tensors."""
    return [i for i, kind in enumerate(dit_block_kinds(config)) if kind != "self"]


class AlternateVLDiT(nn.Module):
    """The N1.6 DiT (``action_head.model``): blocks alternate text-cross / self / image-cross / self."""

    def __init__(self, config: ActionHeadConfig):
        super().__init__()
        dit = config.dit
        dim = dit.inner_dim
        self.kinds = dit_block_kinds(config)
        self.timestep_encoder = TimestepEncoder(dit.timestep_proj_dim, dim)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(
                dim,
                dit.num_attention_heads,
                dit.attention_head_dim,
                dim if kind == "self" else config.backbone_embedding_dim,
                dit.norm_eps,
            )
            for kind in self.kinds
        )
        self.norm_out = nn.LayerNorm(dim, eps=dit.final_norm_eps, elementwise_affine=False)
        self.proj_out_1 = nn.Linear(dim, 2 * dim)
        self.proj_out_2 = nn.Linear(dim, dit.output_dim)

    def output(self, hidden_states: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """Output layer: (shift, scale) = split(proj_out_1(SiLU(temb))) — shift FIRST — then proj_out_2."""
        shift, scale = self.proj_out_1(F.silu(temb)).chunk(2, dim=-1)  # [B, 2C] -> 2 × [B, C]
        return self.proj_out_2(modulate(self.norm_out(hidden_states), scale, shift))  # [B, T, O]

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        image_mask: torch.Tensor,
        attention_mask: torch.Tensor,
    ) -> torch.Tensor:
        """hidden_states [B, 1+H, C], encoder_hidden_states [B, S, E], timestep int64 [B], masks bool [B, S]
        → [B, 1+H, O]. The timestep MLP and every K/V projection run on each call, as in the original."""
        temb = self.timestep_encoder(timestep)  # [B, C]
        text_mask = ~image_mask & attention_mask  # [B, S]: text, prompt and image-tag tokens
        image_attend = image_mask & attention_mask  # [B, S]
        for kind, block in zip(self.kinds, self.transformer_blocks, strict=True):
            if kind == "self":
                hidden_states = block(hidden_states, temb)
            else:
                mask = text_mask if kind == "text" else image_attend
                hidden_states = block(hidden_states, temb, encoder_hidden_states, mask)
        return self.output(hidden_states, temb)


# ------------------------------------------------------------------------------------------ action head
def euler_update(actions: torch.Tensor, step: torch.Tensor, step_weight: torch.Tensor | None) -> torch.Tensor:
    """actions + step·weight per row ([B, H, Da] + [B, H, Da]·[B, H, 1]); no weight: the plain update
    (a weight of 1 multiplies exactly, so both give the same bits)."""
    if step_weight is None:
        return actions + step
    return actions + step * step_weight.to(step.dtype).unsqueeze(-1)


@dataclass
class ReferenceStep:
    """Intermediates of one reference Euler step (for lock-step and per-graph verification)."""

    timestep: torch.Tensor  # int64 [B], τ_k
    action_features: torch.Tensor  # [B, H, C], action encoder + position embedding
    dit_out: torch.Tensor  # [B, H, O], DiT output at the action positions
    velocity: torch.Tensor  # [B, H, Da]
    next_actions: torch.Tensor  # [B, H, Da], x + (dt·velocity)·step_weight


class Gr00tActionHead(nn.Module):
    """The original's action head at inference: state_dict keys equal the checkpoint's ``action_head.*``."""

    def __init__(self, config: ActionHeadConfig):
        super().__init__()
        self.config = config
        dim, num_categories = config.input_embedding_dim, config.max_num_embodiments
        self.vlln = nn.LayerNorm(config.backbone_embedding_dim, eps=NORM_EPS)
        self.state_encoder = CategorySpecificMLP(
            num_categories, config.max_state_dim, config.hidden_size, dim
        )
        self.action_encoder = MultiEmbodimentActionEncoder(num_categories, config.max_action_dim, dim)
        self.action_decoder = CategorySpecificMLP(
            num_categories, config.hidden_size, config.hidden_size, config.max_action_dim
        )
        self.position_embedding = nn.Embedding(config.max_seq_len, dim)
        # no mask_token: it only replaces dropped state tokens in training (state_dropout_prob > 0);
        # the checkpoint loader skips it when a checkpoint carries one
        self.model = AlternateVLDiT(config)

    @property
    def dtype(self) -> torch.dtype:
        return self.position_embedding.weight.dtype

    # ---------------------------------------------------------------- pieces of one step
    def timestep(self, k: int, batch: int) -> torch.Tensor:
        """τ_k = int(k/N · num_timestep_buckets) as an int64 tensor [B] (0, 250, 500, 750 for N = 4)."""
        n = self.config.num_inference_timesteps
        value = int(k / n * self.config.num_timestep_buckets)
        return torch.full((batch,), value, dtype=torch.int64, device=self.position_embedding.weight.device)

    def encode_context(self, backbone_features: torch.Tensor) -> torch.Tensor:
        """VLLN over every position (padding included): [B, S, E] → [B, S, E]."""
        return self.vlln(backbone_features.to(self.dtype))

    def encode_state(self, state: torch.Tensor, embodiment_id: torch.Tensor) -> torch.Tensor:
        """[B, 1, Ds] → the state token [B, 1, C]."""
        return self.state_encoder(state.to(self.dtype), embodiment_id)

    def reference_step_outputs(
        self,
        x: torch.Tensor,
        k: int,
        vl: torch.Tensor,
        state_features: torch.Tensor,
        image_mask: torch.Tensor,
        attention_mask: torch.Tensor,
        embodiment_id: torch.Tensor,
        step_weight: torch.Tensor | None = None,
    ) -> ReferenceStep:
        """One Euler step from actions x [B, H, Da] at step k, with every intermediate returned;
        ``step_weight`` [B, H] scales each row's update (prefix conditioning), None: 1.

        ``vl`` is the VLLN output (``encode_context``), ``state_features`` the state token
        (``encode_state``). Nothing is cached across steps: the timestep MLP and the K/V projections
        are recomputed here, exactly as the original sampler does.
        """
        batch, horizon = x.shape[0], self.config.action_horizon
        timestep = self.timestep(k, batch)  # [B]
        action_features = self.action_encoder(x, timestep, embodiment_id)  # [B, H, C]
        positions = torch.arange(horizon, device=x.device)  # [H]
        action_features = action_features + self.position_embedding(positions)[None]  # action tokens only
        sa_embs = torch.cat([state_features, action_features], dim=1)  # [B, 1+H, C]: state token first
        dit_out = self.model(sa_embs, vl, timestep, image_mask, attention_mask)  # [B, 1+H, O]
        decoded = self.action_decoder(dit_out, embodiment_id)  # [B, 1+H, Da]
        velocity = decoded[:, -horizon:]  # [B, H, Da]: drop the state position
        dt = 1.0 / self.config.num_inference_timesteps
        return ReferenceStep(
            timestep=timestep,
            action_features=action_features,
            dit_out=dit_out[:, -horizon:],
            velocity=velocity,
            next_actions=euler_update(x, dt * velocity, step_weight),
        )

    def reference_step(
        self,
        x: torch.Tensor,
        k: int,
        vl: torch.Tensor,
        state_features: torch.Tensor,
        image_mask: torch.Tensor,
        attention_mask: torch.Tensor,
        embodiment_id: torch.Tensor,
        step_weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One Euler step: x_{k+1} = x_k + (dt·v(x_k, τ_k))·w (w = step_weight per row, default 1)."""
        return self.reference_step_outputs(
            x, k, vl, state_features, image_mask, attention_mask, embodiment_id, step_weight
        ).next_actions

    # ---------------------------------------------------------------- the sampler
    def reference_denoise(
        self,
        backbone_features: torch.Tensor,
        image_mask: torch.Tensor,
        attention_mask: torch.Tensor,
        state: torch.Tensor,
        embodiment_id: torch.Tensor,
        noise: torch.Tensor,
        step_weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The original flow-matching sampler, unoptimised: N Euler steps from ``noise`` [B, H, Da] to the
        normalised, padded action chunk ``action_pred`` [B, H, Da], in the module's dtype.

        Prefix conditioning (real-time chunking, Isaac-GR00T N1.7's sampler): ``noise`` carries the seeded
        prefix rows and ``step_weight`` [B, H] the per-row strength of every update
        (``runtime/prefix.py`` makes both); None is the plain sampler."""
        self.check_inputs(backbone_features, image_mask, attention_mask, state, embodiment_id, noise)
        if step_weight is not None and tuple(step_weight.shape) != (noise.shape[0], self.config.action_horizon):
            raise ObservationError(f"step_weight has shape {tuple(step_weight.shape)} — expected "
                                   f"{[noise.shape[0], self.config.action_horizon]}")
        vl = self.encode_context(backbone_features)  # [B, S, E], once
        state_features = self.encode_state(state, embodiment_id)  # [B, 1, C], once
        x = noise.to(self.dtype)
        for k in range(self.config.num_inference_timesteps):
            x = self.reference_step(x, k, vl, state_features, image_mask, attention_mask, embodiment_id, step_weight)
        return x

    def check_inputs(
        self, backbone_features, image_mask, attention_mask, state, embodiment_id, noise
    ) -> None:
        """Shapes and dtypes of ``reference_denoise``'s inputs, one clear message per mismatch."""
        c = self.config
        if backbone_features.dim() != 3 or backbone_features.shape[-1] != c.backbone_embedding_dim:
            raise ObservationError(
                f"backbone_features has shape {tuple(backbone_features.shape)} — expected [B, S, {c.backbone_embedding_dim}]"
            )
        batch, seq = backbone_features.shape[:2]
        expected = {
            "image_mask": (image_mask, (batch, seq), torch.bool),
            "attention_mask": (attention_mask, (batch, seq), torch.bool),
            "state": (state, (batch, 1, c.max_state_dim), None),
            "embodiment_id": (embodiment_id, (batch,), torch.int64),
            "noise": (noise, (batch, c.action_horizon, c.max_action_dim), None),
        }
        for name, (tensor, shape, dtype) in expected.items():
            if tuple(tensor.shape) != shape:
                raise ObservationError(f"{name} has shape {tuple(tensor.shape)} — expected {list(shape)}")
            if dtype is not None and tensor.dtype != dtype:
                raise ObservationError(f"{name} has dtype {tensor.dtype} — expected {dtype}")
        if embodiment_id.numel() and not bool(
            ((embodiment_id >= 0) & (embodiment_id < c.max_num_embodiments)).all()
        ):
            raise EmbodimentError(
                f"embodiment_id {embodiment_id.tolist()} — expected ids in 0..{c.max_num_embodiments - 1}"
            )


# ------------------------------------------------------------------------------------------ helpers for export
def detached_linear(linear: nn.Linear, dtype: torch.dtype | None = None) -> nn.Linear:
    """A frozen nn.Linear over the same weights (storage shared when the dtype is unchanged), so that
    casting an export wrapper never touches the loaded model."""
    copy = nn.Linear(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
    copy.weight = nn.Parameter(linear.weight.detach().to(dtype or linear.weight.dtype), requires_grad=False)
    if linear.bias is not None:
        copy.bias = nn.Parameter(linear.bias.detach().to(dtype or linear.bias.dtype), requires_grad=False)
    return copy


class Fp32LayerNorm(nn.LayerNorm):
    """LayerNorm evaluated in fp32 whatever the activations' dtype, result cast back (norms in fp32:
    an fp16 variance of a DiT residual stream can overflow). In an fp32 graph the casts vanish."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)


def check_embodiment_slots(slots: list[int] | None, num_embodiments: int) -> list[int] | None:
    """Validate ``embodiment_slots``: None (keep all rows) or distinct ids in 0..E−1."""
    if slots is None:
        return None
    slots = [int(s) for s in slots]
    if not slots or len(set(slots)) != len(slots) or not all(0 <= s < num_embodiments for s in slots):
        raise EmbodimentError(
            f"embodiment_slots {slots} — expected a non-empty list of distinct ids in 0..{num_embodiments - 1}"
        )
    return slots
