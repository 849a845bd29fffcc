"""GR00T N1.7 configuration: a checkpoint's ``config.json`` (``model_type`` Gr00tN1d7) plus the
Cosmos-Reason2-2B (Qwen3-VL) backbone values, which the checkpoint does not carry (spec §1).

The released config.json names only ``model_name``; the backbone's architecture lives in the gated
Cosmos-Reason2-2B repository, so its values are built in here (spec §1.2) and selected by
``model_name``. Synthetic checkpoints record their own (small) backbone under the same field N1.6's
use, so tiny, small and full go through one code path. Fields absent from config.json take the
original code's dataclass defaults, which differ from the released values for a few fields
(select_layer 12, a 16-block DiT, no VL self-attention: spec §1.1) — never the release's.

Stdlib only: export, runtime and CLI read configs without PyTorch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ...base.errors import ConfigError
from ...base.files import read_json
from ...model.config import (
    INT_LIMITS,
    SYNTHETIC_BACKBONE_KEY,
    ActionHeadConfig,
    DiTConfig,
    _build,
    backbone_record,
    check_values,
    read_backbone,
)

MODEL_TYPE = "Gr00tN1d7"
CONFIG_FILE = "config.json"
#: the backbone every released N1.7 checkpoint uses
COSMOS_REASON2_2B = "nvidia/Cosmos-Reason2-2B"
#: what error messages call the model
MODEL = "GR00T N1.7"


@dataclass(frozen=True)
class VisionConfig:
    """Qwen3-VL vision tower (transformers ``Qwen3VLVisionConfig`` field names)."""

    depth: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    out_hidden_size: int
    num_position_embeddings: int
    deepstack_visual_indexes: tuple[int, ...]
    patch_size: int = 16
    temporal_patch_size: int = 2
    spatial_merge_size: int = 2
    in_channels: int = 3
    hidden_act: str = "gelu_pytorch_tanh"
    #: LayerNorm eps of every vision norm (fixed in the original code, not a config field)
    layer_norm_eps: float = 1e-6
    #: base of the 2-D vision RoPE (fixed in the original code)
    rope_theta: float = 10000.0

    @property
    def grid_side(self) -> int:
        """Side of the learned square position table (48 for 2304 entries)."""
        return int(round(self.num_position_embeddings**0.5))

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def patch_dim(self) -> int:
        """Width of one flattened pixel patch: channels × temporal × patch² (1536)."""
        return self.in_channels * self.temporal_patch_size * self.patch_size**2

    @property
    def merged_dim(self) -> int:
        """Width of a 2×2-grouped token entering a merger (4096)."""
        return self.hidden_size * self.spatial_merge_size**2


@dataclass(frozen=True)
class TextConfig:
    """Qwen3-VL text model (``Qwen3VLTextConfig`` names); ``num_hidden_layers`` is the full depth, of
    which ``N17Config.select_layer`` layers are kept."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    rope_theta: float = 5_000_000.0
    mrope_section: tuple[int, ...] = (24, 20, 20)
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 262144
    hidden_act: str = "silu"


@dataclass(frozen=True)
class BackboneConfig:
    """Qwen3-VL backbone: vision tower, text model and the special token ids the model reads."""

    vision: VisionConfig
    text: TextConfig
    image_token_id: int = 151655
    video_token_id: int = 151656
    vision_start_token_id: int = 151652
    vision_end_token_id: int = 151653

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("vision", "text")}
        return {"vision_config": asdict(self.vision), "text_config": asdict(self.text), **data}

    @classmethod
    def from_dict(cls, data: Any, source: str) -> BackboneConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
        ids = {k: data[k] for k in (f.name for f in fields(cls)) if k in data and k not in ("vision", "text")}
        return cls(
            vision=_build(VisionConfig, data.get("vision_config"), f"{source}: vision_config"),
            text=_build(TextConfig, data.get("text_config"), f"{source}: text_config"),
            **ids,
        )


#: Cosmos-Reason2-2B (a Qwen3-VL-2B-Instruct layout), spec §1.2
COSMOS_REASON2_2B_CONFIG = BackboneConfig(
    vision=VisionConfig(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, out_hidden_size=2048,
                        num_position_embeddings=2304, deepstack_visual_indexes=(5, 11, 17)),
    text=TextConfig(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
                    num_key_value_heads=8, head_dim=128, vocab_size=151936),
)  # fmt: skip

BUILTIN_BACKBONES: dict[str, BackboneConfig] = {COSMOS_REASON2_2B: COSMOS_REASON2_2B_CONFIG}


@dataclass(frozen=True)
class VLSelfAttentionConfig:
    """``vl_self_attention_cfg``: self-attention blocks between VLLN and the DiT (absent: identity)."""

    num_layers: int = 4
    num_attention_heads: int = 32
    attention_head_dim: int = 64

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim


#: embodiment tag → projector id built into the original (spec §6.2); embodiment_id.json entries win
BUILTIN_EMBODIMENT_IDS: dict[str, int] = {
    "oxe_droid_relative_eef_relative_joint": 24, "xdof_relative_eef_relative_joint": 27,
    "xdof_relative_eef_relative_joint_subtask": 27, "real_g1_relative_eef_relative_joints": 25,
    "real_r1_pro_sharpa_relative_eef": 26, "real_r1_pro_sharpa_relative_eef_human": 26,
    "real_r1_pro_sharpa_relative_eef_maxinsights": 26, "real_r1_pro_sharpa_relative_eef_mecka": 26,
    "unitree_g1_full_body_with_waist_height_nav_cmd": 25, "unitree_g1_sonic": 11,
    "simpler_env_google": 0, "simpler_env_widowx": 1, "libero_sim": 2,
    "new_embodiment": 10, "robocasa_panda_omron": 10, "robocasa_gr1_tabletop": 10,
}  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class N17Config(ActionHeadConfig):
    """Everything needed to build Gr00tN1d7 in PyTorch. Defaults are the released nvidia/GR00T-N1.7-3B
    values; the action head's fields are ``ActionHeadConfig``'s, as N1.6's, so its action head is reused."""

    backbone: BackboneConfig = COSMOS_REASON2_2B_CONFIG
    model_name: str = COSMOS_REASON2_2B
    select_layer: int = 16
    max_state_dim: int = 132
    max_action_dim: int = 132
    action_horizon: int = 40
    state_history_length: int = 1
    state_dropout_prob: float = 0.2
    use_percentiles: bool = True
    #: None when config.json has no ``vl_self_attention_cfg`` (the original then uses an identity)
    vl_self_attention: VLSelfAttentionConfig | None = field(default_factory=VLSelfAttentionConfig)

    # ---------------------------------------------------------------- reading
    @classmethod
    def from_dict(cls, data: Any, source: str = CONFIG_FILE) -> N17Config:
        """Build from a config.json dict; the backbone comes from the built-in table (by ``model_name``)
        or from a synthetic checkpoint's own record."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
        model_type = data.get("model_type", MODEL_TYPE)
        if model_type != MODEL_TYPE:
            raise ConfigError(f"{source}: model_type {model_type!r} — expected {MODEL_TYPE!r} (a GR00T N1.7 checkpoint)")
        model_name, backbone = read_backbone(data, source, BUILTIN_BACKBONES, COSMOS_REASON2_2B,
                                             BackboneConfig.from_dict)
        dit_raw = _section(data, "diffusion_model_cfg", source) or {}
        dit = DiTConfig.from_json(dit_raw, data.get("hidden_size", 1024),
                                  num_layers=CODE_DEFAULTS["diffusion_model_cfg.num_layers"])
        vlsa_raw = _section(data, "vl_self_attention_cfg", source)
        vlsa = None if vlsa_raw is None else _build(
            VLSelfAttentionConfig, vlsa_raw, f"{source}: vl_self_attention_cfg")
        scalar = {f.name for f in fields(cls)} - {"backbone", "dit", "vl_self_attention", "model_name"}
        values = {**{k: v for k, v in CODE_DEFAULTS.items() if "." not in k}, **{k: data[k] for k in scalar if k in data}}
        config = cls(backbone=backbone, model_name=model_name, dit=dit, vl_self_attention=vlsa, **values)
        check_values(config, source, int_limits=N17_INT_LIMITS, model=MODEL)
        _check_int_lists(config.backbone, source)
        config.check(source)
        return config

    def to_dict(self) -> dict[str, Any]:
        """config.json form (what synthetic checkpoints write): the release's keys and nesting."""
        skip = ("backbone", "dit", "vl_self_attention")
        data: dict[str, Any] = {"architectures": [MODEL_TYPE], "model_type": MODEL_TYPE}
        data.update({f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip})
        data["diffusion_model_cfg"] = self.dit.to_json()
        if self.vl_self_attention is not None:
            data["vl_self_attention_cfg"] = {**asdict(self.vl_self_attention), "dropout": 0.2,
                                             "final_dropout": True, "positional_embeddings": None}  # fmt: skip
        return {**data, **backbone_record(self.model_name, self.backbone, BUILTIN_BACKBONES)}

    # ---------------------------------------------------------------- checks
    def check(self, source: str = "config") -> None:
        """Refuse value combinations the N1.7 architecture (as implemented here) cannot have."""
        text, vision, vlsa = self.backbone.text, self.backbone.vision, self.vl_self_attention
        problems = self.action_head_problems(text.hidden_size)
        if vision.out_hidden_size != text.hidden_size:
            problems.append(f"vision out_hidden_size {vision.out_hidden_size} != LLM hidden_size {text.hidden_size}")
        if vlsa is not None and vlsa.inner_dim != self.backbone_embedding_dim:
            problems.append(f"vl_self_attention heads×head_dim {vlsa.inner_dim} != backbone_embedding_dim "
                            f"{self.backbone_embedding_dim}")
        if not 1 <= self.select_layer <= text.num_hidden_layers:
            problems.append(f"select_layer {self.select_layer} outside 1..{text.num_hidden_layers}")
        if vision.grid_side**2 != vision.num_position_embeddings:
            problems.append(f"vision num_position_embeddings {vision.num_position_embeddings} is not a square grid")
        if vision.hidden_size % vision.num_heads or vision.head_dim % 4:
            problems.append(f"vision hidden_size {vision.hidden_size} / {vision.num_heads} heads: head_dim must be a "
                            "multiple of 4 (2-D RoPE)")
        if not all(0 <= i < vision.depth for i in vision.deepstack_visual_indexes):
            problems.append(f"deepstack_visual_indexes {list(vision.deepstack_visual_indexes)} outside 0..{vision.depth - 1}")
        if len(vision.deepstack_visual_indexes) > self.select_layer:
            problems.append("more DeepStack features than kept LLM layers")
        if sum(text.mrope_section) * 2 != text.head_dim:
            problems.append(f"mrope_section {list(text.mrope_section)} does not sum to head_dim/2 = {text.head_dim // 2}")
        if self.state_history_length != 1:
            problems.append(f"state_history_length {self.state_history_length} (only 1, the release's, is supported)")
        if problems:
            raise ConfigError(f"{source}: unsupported {MODEL} config — " + "; ".join(problems))

    # ---------------------------------------------------------------- derived
    @property
    def pixels_per_image_token(self) -> int:
        """(patch · merge)² = 1024: an H′×W′ image gives H′·W′/1024 LLM tokens."""
        v = self.backbone.vision
        return (v.patch_size * v.spatial_merge_size) ** 2


#: values the original code uses for fields a config.json leaves out, where they differ from the release
CODE_DEFAULTS: dict[str, Any] = {"select_layer": 12, "diffusion_model_cfg.num_layers": 16, "state_dropout_prob": 0.8}

#: plausibility limits of N1.7's integer fields, on top of N1.6's (same role: refuse absurd sizes early)
N17_INT_LIMITS: dict[str, tuple[int, int]] = {
    **INT_LIMITS, "depth": (1, 256), "num_heads": (1, 1024), "out_hidden_size": (1, 65536),
    "num_position_embeddings": (1, 1 << 20), "temporal_patch_size": (1, 16), "spatial_merge_size": (1, 16),
    "in_channels": (1, 16), "image_token_id": (0, 1 << 22), "video_token_id": (0, 1 << 22),
    "vision_start_token_id": (0, 1 << 22), "vision_end_token_id": (0, 1 << 22), "state_history_length": (1, 64),
}  # fmt: skip


def read_config(folder: str | Path) -> N17Config:
    """The N17Config of a checkpoint folder's config.json (one-line ConfigError when absent or wrong)."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"checkpoint config not found: {path} — expected a GR00T N1.7 config.json")
    return N17Config.from_dict(read_json(path, "GR00T N1.7 config.json", ConfigError, expect=dict), str(path))


# ---------------------------------------------------------------------- presets
#: Qwen's 26 added tokens follow the base BPE vocabulary; <|image_pad|> is the 13th (151643 + 12)
QWEN_ADDED_TOKENS = 26
IMAGE_PAD_OFFSET = 12
#: base BPE size of each preset (full: Qwen3's 151,643)
BASE_VOCAB = {"tiny": 1024, "small": 2048, "full": 151_643}
PRESETS = tuple(BASE_VOCAB)


def token_ids(base_vocab: int) -> dict[str, int]:
    """The special token ids of a tokenizer with ``base_vocab`` regular tokens (Qwen's layout)."""
    return {"vision_start_token_id": base_vocab + 9, "vision_end_token_id": base_vocab + 10,
            "image_token_id": base_vocab + IMAGE_PAD_OFFSET, "video_token_id": base_vocab + 13}  # fmt: skip


def preset_config(name: str) -> N17Config:
    """tiny (tests: seconds to export), small (benchmarks, a few hundred MB) or full (the release)."""
    if name not in BASE_VOCAB:
        raise ConfigError(f"unknown preset {name!r} — expected one of: {', '.join(PRESETS)}")
    if name == "full":
        return N17Config()
    ids, vocab = token_ids(BASE_VOCAB[name]), BASE_VOCAB[name] + QWEN_ADDED_TOKENS
    if name == "tiny":
        vision = VisionConfig(depth=4, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                              num_position_embeddings=64, deepstack_visual_indexes=(0, 1, 2))
        text = TextConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=6, num_attention_heads=4,
                          num_key_value_heads=2, head_dim=16, vocab_size=vocab, mrope_section=(4, 2, 2))
        return N17Config(
            backbone=BackboneConfig(vision=vision, text=text, **ids), select_layer=4, backbone_embedding_dim=64,
            max_state_dim=24, max_action_dim=24, action_horizon=16, hidden_size=32, input_embedding_dim=32,
            max_seq_len=64, dit=DiTConfig(num_layers=4, num_attention_heads=4, attention_head_dim=8, output_dim=32),
            vl_self_attention=VLSelfAttentionConfig(num_layers=2, num_attention_heads=4, attention_head_dim=16),
        )  # fmt: skip
    vision = VisionConfig(depth=8, hidden_size=256, intermediate_size=1024, num_heads=4, out_hidden_size=512,
                          num_position_embeddings=576, deepstack_visual_indexes=(1, 3, 5))
    text = TextConfig(hidden_size=512, intermediate_size=1536, num_hidden_layers=8, num_attention_heads=8,
                      num_key_value_heads=4, head_dim=64, vocab_size=vocab, mrope_section=(12, 10, 10))
    return N17Config(
        backbone=BackboneConfig(vision=vision, text=text, **ids), select_layer=6, backbone_embedding_dim=512,
        max_state_dim=132, max_action_dim=132, action_horizon=40, hidden_size=256, input_embedding_dim=384,
        max_seq_len=128, dit=DiTConfig(num_layers=8, num_attention_heads=8, attention_head_dim=48, output_dim=256),
        vl_self_attention=VLSelfAttentionConfig(num_layers=2, num_attention_heads=8, attention_head_dim=64),
    )  # fmt: skip


def with_values(config: N17Config, **values: Any) -> N17Config:
    """A copy with some fields replaced (tests, fine-tune variants)."""
    return replace(config, **values)


# ---------------------------------------------------------------------- helpers
def _check_int_lists(backbone: BackboneConfig, source: str) -> None:
    """The list fields check_values does not look into: short lists of small non-negative integers."""
    for name, value in (("vision_config.deepstack_visual_indexes", backbone.vision.deepstack_visual_indexes),
                        ("text_config.mrope_section", backbone.text.mrope_section)):
        if not (isinstance(value, tuple) and 0 < len(value) <= 16
                and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 4096 for v in value)):
            raise ConfigError(f"{source}: {SYNTHETIC_BACKBONE_KEY}.{name} must be a list of 1..16 integers in "
                              f"0..4096, got {str(value)[:40]}")


def _section(data: dict, key: str, source: str) -> dict | None:
    value = data.get(key)
    if value is not None and not isinstance(value, dict):
        raise ConfigError(f"{source}: {key} must be an object, got {type(value).__name__}")
    return value
