"""GR00T N1.6 configuration: the values of a checkpoint's ``config.json`` plus the Eagle backbone's.

The published N1.6 checkpoints do not carry the Eagle-Block2A-2B-v2 backbone configuration (it lives
with Isaac-GR00T's vendored Eagle folder), so its values are built in here and selected by the
checkpoint's ``model_name``. Synthetic checkpoints record their own (small) backbone values under
``SYNTHETIC_BACKBONE_KEY`` so that tiny, small and full checkpoints all go through one code path.

This module is dependency-free (stdlib only) so that export, runtime and CLI code can read configs
without PyTorch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ...base.errors import ConfigError
from ...base.files import read_json
from ...model.config import (  # noqa: F401 - SYNTHETIC_BACKBONE_KEY: this module's API before model.config
    SYNTHETIC_BACKBONE_KEY,
    ActionHeadConfig,
    DiTConfig,
    _build,
    backbone_record,
    check_values,
    read_backbone,
)

#: how messages name the release
MODEL = "GR00T N1.6"

#: The backbone every released N1.6 checkpoint uses.
EAGLE_BLOCK2A_2B_V2 = "nvidia/Eagle-Block2A-2B-v2"


@dataclass(frozen=True)
class VisionConfig:
    """SigLIP2 vision tower (transformers ``Siglip2VisionConfig`` field names)."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    patch_size: int
    num_patches: int
    num_channels: int = 3
    layer_norm_eps: float = 1e-6
    hidden_act: str = "gelu_pytorch_tanh"

    @property
    def grid_side(self) -> int:
        """Side of the learned square position-embedding grid (16 for 256 patches)."""
        side = int(round(self.num_patches**0.5))
        return side


@dataclass(frozen=True)
class TextConfig:
    """Qwen3 language model (transformers ``Qwen3Config`` field names); ``num_hidden_layers`` is the
    full model's depth, of which only ``Gr00tConfig.select_layer`` layers are kept."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    max_position_embeddings: int = 40960
    hidden_act: str = "silu"


@dataclass(frozen=True)
class BackboneConfig:
    """Eagle backbone: vision tower, pixel-unshuffle projector and LLM."""

    vision: VisionConfig
    text: TextConfig
    image_token_index: int
    downsample_ratio: float = 0.5
    mlp_connector_layers: int = 2

    @property
    def unshuffle_factor(self) -> int:
        """Pixel-unshuffle block side: 2 for downsample_ratio 0.5."""
        return int(round(1 / self.downsample_ratio))

    @property
    def projector_in_dim(self) -> int:
        """Width of a pixel-unshuffled vision token (4608 for the real model)."""
        return self.vision.hidden_size * self.unshuffle_factor**2

    @property
    def image_start_token_id(self) -> int:
        """``<img>``: Eagle adds it right after ``<IMG_CONTEXT>`` (151670 for the real tokenizer)."""
        return self.image_token_index + 1

    @property
    def image_end_token_id(self) -> int:
        """``</img>`` (151671 for the real tokenizer)."""
        return self.image_token_index + 2

    def to_dict(self) -> dict[str, Any]:
        return {
            "vision_config": asdict(self.vision),
            "text_config": asdict(self.text),
            "image_token_index": self.image_token_index,
            "downsample_ratio": self.downsample_ratio,
            "mlp_connector_layers": self.mlp_connector_layers,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> BackboneConfig:
        try:
            return cls(
                vision=_build(VisionConfig, data["vision_config"], f"{source}: vision_config"),
                text=_build(TextConfig, data["text_config"], f"{source}: text_config"),
                image_token_index=data["image_token_index"],
                downsample_ratio=data.get("downsample_ratio", 0.5),
                mlp_connector_layers=data.get("mlp_connector_layers", 2),
            )
        except (KeyError, TypeError) as exc:  # TypeError: data is not an object
            raise ConfigError(f"{source}: backbone config lacks the field {exc.args[0]!r}") from None


#: Eagle-Block2A-2B-v2 values (Isaac-GR00T's vendored config.json, see spec §1.2).
EAGLE_BLOCK2A_2B_V2_CONFIG = BackboneConfig(
    vision=VisionConfig(
        hidden_size=1152,
        intermediate_size=4304,
        num_hidden_layers=27,
        num_attention_heads=16,
        patch_size=14,
        num_patches=256,
    ),
    text=TextConfig(
        hidden_size=2048,
        intermediate_size=6144,
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=128,
        vocab_size=151680,
    ),
    image_token_index=151669,
)

BUILTIN_BACKBONES: dict[str, BackboneConfig] = {EAGLE_BLOCK2A_2B_V2: EAGLE_BLOCK2A_2B_V2_CONFIG}


@dataclass(frozen=True, kw_only=True)
class Gr00tConfig(ActionHeadConfig):
    """Everything needed to build ``Gr00tN1d6`` in PyTorch; every size comes from here (the action head's
    fields: ``ActionHeadConfig``)."""

    backbone: BackboneConfig
    model_name: str = EAGLE_BLOCK2A_2B_V2
    select_layer: int = 16
    max_state_dim: int = 128
    max_action_dim: int = 128
    action_horizon: int = 50
    state_dropout_prob: float = 0.0

    # ---------------------------------------------------------------- reading
    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config.json") -> Gr00tConfig:
        """Build from a checkpoint's config.json dict; the backbone comes from the built-in table
        (by ``model_name``) or from a synthetic checkpoint's own record."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
        model_name, backbone = read_backbone(data, source, BUILTIN_BACKBONES, EAGLE_BLOCK2A_2B_V2,
                                             BackboneConfig.from_dict)
        dit_raw = data.get("diffusion_model_cfg") or {}
        if not isinstance(dit_raw, dict):
            raise ConfigError(f"{source}: diffusion_model_cfg must be an object, got {type(dit_raw).__name__}")
        dit = DiTConfig.from_json(dit_raw, data.get("hidden_size", 1024))
        scalar_fields = {f.name for f in fields(cls)} - {"backbone", "dit", "model_name"}
        values = {k: data[k] for k in scalar_fields if k in data}
        try:
            config = cls(backbone=backbone, model_name=model_name, dit=dit, **values)
        except TypeError as exc:  # pragma: no cover - dataclass signature errors
            raise ConfigError(f"{source}: {exc}") from None
        check_values(config, source, model=MODEL)
        config.check(source)
        return config

    @classmethod
    def from_file(cls, path: str | Path) -> Gr00tConfig:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"checkpoint config not found: {path} — expected a GR00T N1.6 config.json")
        data = read_json(path, "GR00T N1.6 config.json", ConfigError, expect=dict)
        return cls.from_dict(data, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        """config.json form (what ``make-checkpoint`` writes and ``manifest.json`` records)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("backbone", "dit")}
        data["diffusion_model_cfg"] = self.dit.to_json()
        return {**data, **backbone_record(self.model_name, self.backbone, BUILTIN_BACKBONES)}

    # ---------------------------------------------------------------- checks
    def check(self, source: str = "config") -> None:
        """Refuse value combinations the N1.6 architecture cannot have."""
        text, vision = self.backbone.text, self.backbone.vision
        problems = self.action_head_problems(text.hidden_size)
        if not 1 <= self.select_layer <= text.num_hidden_layers:
            problems.append(f"select_layer {self.select_layer} outside 1..{text.num_hidden_layers}")
        if vision.grid_side**2 != vision.num_patches:
            problems.append(f"vision num_patches {vision.num_patches} is not a square grid")
        if problems:
            raise ConfigError(f"{source}: unsupported {MODEL} config — " + "; ".join(problems))

    # ---------------------------------------------------------------- derived
    @property
    def patch_tokens_per_image_pixel(self) -> int:
        """Pixels per LLM image token: (patch · unshuffle)² = 784 for the real model."""
        return (self.backbone.vision.patch_size * self.backbone.unshuffle_factor) ** 2


