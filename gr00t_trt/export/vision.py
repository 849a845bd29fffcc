"""``vision_<h>x<w>`` graph: uint8 images of one size → LLM image embeddings (graphs.VISION).

Same function as ``EagleBackbone.encode_images`` for a fixed (h, w), written so the ONNX graph is
static apart from the image count n: the position table is resized once here (bilinear + antialias in
fp32, exactly as the reference does per call) and stored as a constant, so no Resize op with
antialias is exported; patchify and pixel-unshuffle are plain reshapes/transposes; every image is its
own attention sequence (batch dim n), so images never attend to each other.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ExportError
from ..model.backbone import EagleBackbone
from ..model.checkpoint import parameters_on_meta


def detached_backbone(backbone: EagleBackbone, dtype: torch.dtype | None = None) -> EagleBackbone:
    """A new EagleBackbone over the same weights (storage shared when the dtype is unchanged), so that
    casting an export wrapper (``.to(fp16)``) never touches the loaded model."""
    attn = backbone.vision.config._attn_implementation
    with parameters_on_meta():
        clone = EagleBackbone(backbone.config, attn_implementation=attn)
    state = {k: v.detach().to(dtype or v.dtype) for k, v in backbone.state_dict().items()}
    clone.load_state_dict(state, strict=True, assign=True)
    return clone.requires_grad_(False).eval()


class VisionGraph(nn.Module):
    """images uint8 [n, h, w, 3] → image_embeds [n, t, E] for one image size (h, w)."""

    def __init__(self, backbone: EagleBackbone, height: int, width: int, dtype: torch.dtype | None = None):
        super().__init__()
        config = backbone.config
        vc = config.backbone.vision
        self.patch = vc.patch_size
        self.factor = config.backbone.unshuffle_factor
        step = self.patch * self.factor
        if height <= 0 or width <= 0 or height % step or width % step:
            raise ExportError(f"vision graph size {height}x{width} — expected positive multiples of {step}")
        self.height, self.width = height, width
        self.grid_h, self.grid_w = height // self.patch, width // self.patch
        parts = detached_backbone(backbone, dtype)
        vision = parts.vision
        self.patch_embedding = vision.embeddings.patch_embedding
        self.encoder_layers = vision.encoder.layers
        self.post_layernorm = vision.post_layernorm
        self.mlp1 = parts.projector
        with torch.no_grad():
            pos = parts.position_embedding(self.grid_h, self.grid_w)  # [P, D], resized in fp32 then cast
        self.register_buffer("position_embedding", pos.clone(), persistent=True)

    @property
    def tokens_per_image(self) -> int:
        return (self.grid_h // self.factor) * (self.grid_w // self.factor)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        p, f, gh, gw = self.patch, self.factor, self.grid_h, self.grid_w
        dtype = self.patch_embedding.weight.dtype
        x = (images.to(torch.float32) - 127.5) / 127.5  # [n, h, w, 3] in [-1, 1]
        x = x.reshape(-1, gh, p, gw, p, 3)  # [n, gh, pr, gw, pc, 3]
        x = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, gh * gw, p * p * 3)  # [n, P, (pr, pc, ch)]
        x = self.patch_embedding(x.to(dtype)) + self.position_embedding  # [n, P, D]
        for layer in self.encoder_layers:
            x = layer(x, None)
        x = self.post_layernorm(x)  # [n, P, D]
        d = x.shape[-1]
        # pixel-unshuffle: token (r, s), channel c·f² + f·i + j ← patch (f·r + i, f·s + j), channel c
        x = x.reshape(-1, gh // f, f, gw // f, f, d)  # [n, r, i, s, j, D]
        x = x.permute(0, 1, 3, 5, 2, 4)  # [n, r, s, D, i, j]
        x = x.reshape(-1, (gh // f) * (gw // f), d * f * f)  # [n, t, D·f²]
        return self.mlp1(x)  # [n, t, E]
