"""Eagle-Block2A-2B-v2 backbone of GR00T N1.6: SigLIP2 vision tower, pixel-unshuffle projector, Qwen3.

This is the unoptimised reference (spec §3). Attribute names reproduce the checkpoint's
``backbone.*`` keys minus ``backbone.``:

  model.vision_model.vision_model.*   transformers ``Siglip2VisionModel`` (5.x has no nested
                                      ``vision_model`` attribute, so a holder module adds that level)
  model.mlp1.{0,1,3}                  LayerNorm / Linear / GELU(erf) / Linear
  model.language_model.model.*        transformers ``Qwen3Model`` truncated to ``select_layer`` layers

The SigLIP2 pooling head (``...vision_model.head.*``) and ``...language_model.lm_head.weight`` are
stored in checkpoints but never used by GR00T, so they are not modules here (the loader skips them
by name).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Qwen3Config, Qwen3Model, Siglip2VisionConfig, Siglip2VisionModel

from ...base.errors import ObservationError
from ...model.holder import Holder
from .config import Gr00tConfig

#: attention implementations of transformers that need no extra package (flash-attn is not used)
ATTN_IMPLEMENTATIONS = ("sdpa", "eager")


def siglip2_config(config: Gr00tConfig, attn_implementation: str = "sdpa") -> Siglip2VisionConfig:
    """transformers config of the vision tower; the pooling head is left out (GR00T never uses it)."""
    v = config.backbone.vision
    return Siglip2VisionConfig(
        hidden_size=v.hidden_size,
        intermediate_size=v.intermediate_size,
        num_hidden_layers=v.num_hidden_layers,
        num_attention_heads=v.num_attention_heads,
        num_channels=v.num_channels,
        patch_size=v.patch_size,
        num_patches=v.num_patches,
        hidden_act=v.hidden_act,
        layer_norm_eps=v.layer_norm_eps,
        attention_dropout=0.0,
        vision_use_head=False,
        attn_implementation=attn_implementation,
    )


def qwen3_config(config: Gr00tConfig, attn_implementation: str = "sdpa") -> Qwen3Config:
    """transformers config of the LLM with only the ``select_layer`` layers GR00T keeps."""
    t = config.backbone.text
    return Qwen3Config(
        vocab_size=t.vocab_size,
        hidden_size=t.hidden_size,
        intermediate_size=t.intermediate_size,
        num_hidden_layers=config.select_layer,
        num_attention_heads=t.num_attention_heads,
        num_key_value_heads=t.num_key_value_heads,
        head_dim=t.head_dim,
        hidden_act=t.hidden_act,
        rms_norm_eps=t.rms_norm_eps,
        rope_theta=t.rope_theta,
        max_position_embeddings=t.max_position_embeddings,
        attention_bias=False,
        attention_dropout=0.0,
        use_sliding_window=False,
        tie_word_embeddings=False,
        attn_implementation=attn_implementation,
    )


def causal_padding_bias(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Additive LLM attention bias [B, 1, S, S] from a boolean key mask [B, S] (True = real token).

    Query q may attend to key k when k <= q and k is a real token. A padding query would then have
    no allowed key at all (left padding), so every query may also attend to itself: this only changes
    padding rows (whose features nobody reads) and keeps them finite and identical in every
    implementation. Blocked entries get finfo(dtype).min / 2: finite, with room to add a score
    without overflowing in fp16. Built from comparisons and ``where`` only, so it exports unchanged.
    """
    seq = attention_mask.shape[-1]
    pos = torch.arange(seq, device=attention_mask.device)
    causal = pos[None, :] <= pos[:, None]  # [S(q), S(k)]
    diagonal = pos[None, :] == pos[:, None]  # [S, S]
    allowed = (causal[None] & attention_mask[:, None, :]) | diagonal[None]  # [B, S, S]
    zero = torch.zeros((), dtype=dtype, device=attention_mask.device)
    blocked = torch.full((), torch.finfo(dtype).min / 2, dtype=dtype, device=attention_mask.device)
    return torch.where(allowed, zero, blocked)[:, None]  # [B, 1, S, S]


def resize_position_table(table: torch.Tensor, side: int, grid_h: int, grid_w: int) -> torch.Tensor:
    """A learned [side·side, D] position table resized to a (grid_h, grid_w) patch grid → [grid_h·grid_w, D]
    in the table's dtype: bilinear, align_corners False, antialias True, computed in fp32."""
    grid = table.float().reshape(side, side, -1).permute(2, 0, 1)[None]  # [1, D, side, side]
    resized = F.interpolate(grid, size=(grid_h, grid_w), mode="bilinear", align_corners=False, antialias=True)
    return resized[0].flatten(1).transpose(0, 1).to(table.dtype)  # [grid_h·grid_w, D], row-major


class EagleBackbone(nn.Module):
    """Vision tower + projector + truncated Qwen3; ``state_dict()`` keys equal the checkpoint's
    ``backbone.*`` keys without the prefix."""

    def __init__(self, config: Gr00tConfig, attn_implementation: str = "sdpa"):
        super().__init__()
        if attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise ValueError(
                f"attn_implementation {attn_implementation!r} — expected one of {ATTN_IMPLEMENTATIONS}"
            )
        self.config = config
        bb = config.backbone
        self.model = Holder(
            vision_model=Holder(vision_model=Siglip2VisionModel(siglip2_config(config, attn_implementation))),
            mlp1=nn.Sequential(
                nn.LayerNorm(bb.projector_in_dim, eps=1e-5),
                nn.Linear(bb.projector_in_dim, bb.text.hidden_size),
                nn.GELU(),  # exact (erf) GELU, as in Eagle's projector
                nn.Linear(bb.text.hidden_size, bb.text.hidden_size),
            ),
            language_model=Holder(model=Qwen3Model(qwen3_config(config, attn_implementation))),
        )

    # ------------------------------------------------------------------ parts
    @property
    def vision(self) -> Siglip2VisionModel:
        return self.model.vision_model.vision_model

    @property
    def llm(self) -> Qwen3Model:
        return self.model.language_model.model

    @property
    def projector(self) -> nn.Sequential:
        return self.model.mlp1

    @property
    def dtype(self) -> torch.dtype:
        return self.vision.embeddings.patch_embedding.weight.dtype

    # ------------------------------------------------------------------ vision
    def check_images(self, images: torch.Tensor) -> tuple[int, int]:
        """Validate a uint8 [n, h, w, 3] batch; returns the patch grid (h/p, w/p)."""
        vc = self.config.backbone.vision
        step = vc.patch_size * self.config.backbone.unshuffle_factor
        if not isinstance(images, torch.Tensor):
            raise ObservationError(
                f"images: expected a torch uint8 tensor [n, h, w, 3], got {type(images).__name__}"
            )
        if images.dtype != torch.uint8:
            raise ObservationError(f"images: expected dtype uint8 [n, h, w, 3], got {images.dtype}")
        if images.ndim != 4 or images.shape[-1] != vc.num_channels:
            raise ObservationError(
                f"images: expected shape [n, h, w, {vc.num_channels}], got {list(images.shape)}"
            )
        n, h, w, _ = images.shape
        if n == 0 or h == 0 or w == 0 or h % step or w % step:
            raise ObservationError(
                f"images: expected n >= 1 and h, w positive multiples of {step} (patch {vc.patch_size} × "
                f"unshuffle {self.config.backbone.unshuffle_factor}), got {list(images.shape)}"
            )
        return h // vc.patch_size, w // vc.patch_size

    def position_embedding(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """The learned square position table resized to a (grid_h, grid_w) patch grid → [grid_h·grid_w, D].

        Bilinear, align_corners False, antialias True, computed in fp32 (as SigLIP2 does on CPU) and
        cast back; for a grid equal to the table's it is the identity.
        """
        table = self.vision.embeddings.position_embedding.weight
        return resize_position_table(table, self.config.backbone.vision.grid_side, grid_h, grid_w)

    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [n, h, w, 3] → pixels in [-1, 1] as patch vectors [n, (h/p)(w/p), p·p·3].

        Patches are row-major; inside a patch the order is (row, column, channel), the order of
        SigLIP2's image processor and of the checkpoint's patch_embedding columns.
        """
        p = self.config.backbone.vision.patch_size
        n, h, w, c = images.shape
        x = (images.float() - 127.5) / 127.5
        x = x.reshape(n, h // p, p, w // p, p, c)  # [n, gh, pr, gw, pc, c]
        x = x.permute(0, 1, 3, 2, 4, 5)  # [n, gh, gw, pr, pc, c]
        return x.reshape(n, (h // p) * (w // p), p * p * c)  # [n, P, p·p·c]

    def vision_features(self, images: torch.Tensor) -> torch.Tensor:
        """SigLIP2 output after post_layernorm: uint8 [n, h, w, 3] → [n, (h/p)(w/p), D].

        The images of the batch are independent sequences, so attention never crosses images.
        """
        grid_h, grid_w = self.check_images(images)
        emb = self.vision.embeddings
        x = emb.patch_embedding(self.patchify(images).to(self.dtype))  # [n, P, D]
        x = x + self.position_embedding(grid_h, grid_w)[None]
        for layer in self.vision.encoder.layers:
            x = layer(x, None)
        return self.vision.post_layernorm(x)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images of one size [n, h, w, 3] → LLM image embeddings [n, t, E], t = (h/2p)(w/2p)."""
        grid_h, grid_w = self.check_images(images)
        feats = self.vision_features(images)  # [n, gh·gw, D]
        n, _, d = feats.shape
        f = self.config.backbone.unshuffle_factor
        fmap = feats.transpose(1, 2).reshape(n, d, grid_h, grid_w)  # [n, D, gh, gw]
        # channel c·f² + f·i + j holds channel c at offset (i, j) of each f×f block
        fmap = F.pixel_unshuffle(fmap, f)  # [n, D·f², gh/f, gw/f]
        tokens = fmap.flatten(2).transpose(1, 2)  # [n, t, D·f²], row-major over the coarse grid
        return self.projector(tokens)  # [n, t, E]

    # ------------------------------------------------------------------ LLM
    def embed_inputs(self, input_ids: torch.Tensor, image_embeds: torch.Tensor) -> torch.Tensor:
        """Token embeddings [B, S, E] with every ``<IMG_CONTEXT>`` position replaced, row-major over
        (batch, position), by the next row of ``image_embeds`` [T, E]."""
        image_token = self.config.backbone.image_token_index
        embeds = self.llm.embed_tokens(input_ids)
        is_image = input_ids == image_token
        count = int(is_image.sum())
        if (
            image_embeds.ndim != 2
            or image_embeds.shape[0] != count
            or image_embeds.shape[1] != embeds.shape[-1]
        ):
            raise ObservationError(
                f"image_embeds: expected [{count}, {embeds.shape[-1]}] (one row per <IMG_CONTEXT> token id "
                f"{image_token} in input_ids), got {list(image_embeds.shape)}"
            )
        embeds = embeds.clone()
        embeds[is_image] = image_embeds.to(embeds.dtype)
        return embeds

    def forward(
        self, input_ids: torch.Tensor, image_embeds: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """input_ids int64 [B, S], image_embeds [T, E], attention_mask bool [B, S] → post-final-norm
        features [B, S, E]. Position ids are 0..S−1 whatever the padding (as in the original)."""
        self._check_tokens(input_ids, attention_mask)
        embeds = self.embed_inputs(input_ids, image_embeds)
        bias = causal_padding_bias(attention_mask.bool(), embeds.dtype)  # [B, 1, S, S]
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None]  # [1, S]
        out = self.llm(inputs_embeds=embeds, attention_mask=bias, position_ids=positions, use_cache=False)
        return out.last_hidden_state  # final RMSNorm applied (spec §3.3 step 4)

    def _check_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        if not isinstance(input_ids, torch.Tensor) or input_ids.ndim != 2 or input_ids.dtype != torch.int64:
            got = (
                f"{input_ids.dtype} {list(input_ids.shape)}"
                if isinstance(input_ids, torch.Tensor)
                else type(input_ids).__name__
            )
            raise ObservationError(f"input_ids: expected int64 [B, S], got {got}")
        if not isinstance(attention_mask, torch.Tensor) or attention_mask.shape != input_ids.shape:
            got = (
                list(attention_mask.shape)
                if isinstance(attention_mask, torch.Tensor)
                else type(attention_mask).__name__
            )
            raise ObservationError(
                f"attention_mask: expected shape {list(input_ids.shape)} like input_ids, got {got}"
            )
        if attention_mask.dtype != torch.bool:
            raise ObservationError(
                f"attention_mask: expected dtype bool (True = real token), got {attention_mask.dtype}"
            )
        vocab = self.config.backbone.text.vocab_size
        if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= vocab):
            raise ObservationError(
                f"input_ids: expected token ids in [0, {vocab}), got values in "
                f"[{int(input_ids.min())}, {int(input_ids.max())}]"
            )
