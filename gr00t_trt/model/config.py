"""What every family's config shares: the action head's DiT values and the checks that refuse an
implausible config.json value with one line naming the field before any size is used.

Stdlib only, so that export, runtime and CLI code can read configs without PyTorch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from ..base.errors import ConfigError

#: config.json field where synthetic checkpoints store their own backbone values.
SYNTHETIC_BACKBONE_KEY = "gr00t_trt_backbone_config"

@dataclass(frozen=True)
class DiTConfig:
    """The action head's AlternateVLDiT (``diffusion_model_cfg`` plus constructor defaults)."""

    num_layers: int = 32
    num_attention_heads: int = 32
    attention_head_dim: int = 48
    output_dim: int = 1024
    norm_eps: float = 1e-5
    final_norm_eps: float = 1e-6
    #: width of the diffusers ``Timesteps`` sinusoid fed to the timestep MLP (fixed in the original's code)
    timestep_proj_dim: int = 256

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    @classmethod
    def from_json(cls, raw: dict[str, Any], hidden_size: Any, num_layers: int = 32) -> DiTConfig:
        """From config.json's ``diffusion_model_cfg``; absent keys take the original's constructor defaults
        (``output_dim``: the model's ``hidden_size``; ``num_layers``: the family's)."""
        return cls(
            num_layers=raw.get("num_layers", num_layers),
            num_attention_heads=raw.get("num_attention_heads", 32),
            attention_head_dim=raw.get("attention_head_dim", 48),
            output_dim=raw.get("output_dim", hidden_size),
            norm_eps=raw.get("norm_eps", 1e-5),
        )

    def to_json(self) -> dict[str, Any]:
        """config.json's ``diffusion_model_cfg`` as the released checkpoints write it."""
        return {
            "num_layers": self.num_layers, "num_attention_heads": self.num_attention_heads,
            "attention_head_dim": self.attention_head_dim, "output_dim": self.output_dim,
            "norm_type": "ada_norm", "interleave_self_attention": True, "positional_embeddings": None,
            "final_dropout": True, "dropout": 0.2,
        }  # fmt: skip


def read_backbone(data: dict[str, Any], source: str, builtin: dict[str, Any], default_name: str,
                  from_dict: Callable[[Any, str], Any]) -> tuple[str, Any]:
    """(model_name, backbone config) of a config.json: a synthetic checkpoint's own record, else the values
    built in for a released backbone (released checkpoints name it but do not carry its config)."""
    model_name = data.get("model_name", default_name)
    if SYNTHETIC_BACKBONE_KEY in data:
        return model_name, from_dict(data[SYNTHETIC_BACKBONE_KEY], f"{source}: {SYNTHETIC_BACKBONE_KEY}")
    if model_name in builtin:
        return model_name, builtin[model_name]
    raise ConfigError(f"{source}: unknown backbone model_name {model_name!r} — expected one of: "
                      f"{', '.join(sorted(builtin))} (or a synthetic checkpoint with a '{SYNTHETIC_BACKBONE_KEY}' field)")


def backbone_record(model_name: str, backbone: Any, builtin: dict[str, Any]) -> dict[str, Any]:
    """What config.json needs to name the backbone again: nothing for a released one's own values."""
    if model_name in builtin and backbone == builtin[model_name]:
        return {}
    return {SYNTHETIC_BACKBONE_KEY: backbone.to_dict()}


#: plausibility limits (inclusive) of integer fields, by field name: far above the released models' sizes (and
#: what a fine-tune could change them to), far below sizes that would make inspect, layout checks or a
#: model build run for minutes or exhaust memory
INT_LIMITS: dict[str, tuple[int, int]] = {
    "hidden_size": (1, 65536), "intermediate_size": (1, 262144), "num_hidden_layers": (1, 256),
    "num_attention_heads": (1, 1024), "num_key_value_heads": (1, 1024), "head_dim": (1, 4096),
    "patch_size": (1, 1024), "num_patches": (1, 1 << 20), "num_channels": (1, 16), "vocab_size": (1, 1 << 22),
    "max_position_embeddings": (1, 1 << 24), "image_token_index": (0, 1 << 22), "mlp_connector_layers": (1, 16),
    "num_layers": (1, 256), "attention_head_dim": (1, 4096), "output_dim": (1, 65536),
    "timestep_proj_dim": (1, 65536), "select_layer": (1, 256), "backbone_embedding_dim": (1, 65536),
    "max_state_dim": (1, 65536), "max_action_dim": (1, 65536), "action_horizon": (1, 65536),
    "input_embedding_dim": (1, 65536), "max_seq_len": (1, 1 << 20), "attend_text_every_n_blocks": (1, 256),
    "max_num_embodiments": (1, 1024), "num_inference_timesteps": (1, 1000), "num_timestep_buckets": (1, 1 << 20),
}  # fmt: skip
#: open/closed ranges of float fields: (low, high, low inclusive)
FLOAT_LIMITS: dict[str, tuple[float, float, bool]] = {
    "layer_norm_eps": (0.0, 1.0, False), "rms_norm_eps": (0.0, 1.0, False), "norm_eps": (0.0, 1.0, False),
    "final_norm_eps": (0.0, 1.0, False), "rope_theta": (0.0, 1e12, False), "downsample_ratio": (0.0, 1.0, False),
    "state_dropout_prob": (0.0, 1.0, True),
}  # fmt: skip


def check_values(
    config: Any, source: str, where: str = "", *, int_limits: dict[str, tuple[int, int]] = INT_LIMITS,
    model: str,
) -> None:
    """Refuse, with one line naming the field, any value of the wrong type (string, null, bool for a
    number) or outside its plausible range, before any size is used to compute or allocate anything.
    A model family may pass its own ``int_limits`` (by field name); ``model`` names it in messages."""
    for f in fields(config):
        value, name = getattr(config, f.name), f"{where}{f.name}"
        if hasattr(value, "__dataclass_fields__"):
            check_values(value, source, f"{where}{_JSON_NAMES.get(f.name, f.name)}.", int_limits=int_limits,
                         model=model)
        elif f.type == "int":
            low, high = int_limits.get(f.name, (0, 1 << 31))
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(
                    f"{source}: {name} must be an integer in {low}..{high}, got {_shown(value)} — "
                    f"is this a {model} config.json?"
                )
        elif f.type == "float":
            low, high, closed = FLOAT_LIMITS.get(f.name, (float("-inf"), float("inf"), True))
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not ok or not ((low <= value if closed else low < value) and value <= high):
                bracket = "[" if closed else "("
                raise ConfigError(
                    f"{source}: {name} must be a number in {bracket}{low}, {high}], got {_shown(value)} — "
                    f"is this a {model} config.json?"
                )
        elif f.type in ("bool", "str") and not isinstance(value, bool if f.type == "bool" else str):
            raise ConfigError(f"{source}: {name} must be a {f.type}, got {_shown(value)}")


#: config.json names of the nested sections, so that messages name what the user can find in the file
_JSON_NAMES = {"dit": "diffusion_model_cfg", "backbone": SYNTHETIC_BACKBONE_KEY, "vision": "vision_config",
               "text": "text_config"}  # fmt: skip


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _build(cls, data: Any, source: str):
    """A config dataclass from a dict: unknown keys ignored, missing ones named, lists made tuples (the
    dataclasses are frozen and hashable)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"{source}: {exc}") from None


@dataclass(frozen=True, kw_only=True)
class ActionHeadConfig:
    """The flow-matching action head's config.json fields, under the original's names. Each family's config
    inherits them, so both read, write and check them one way and one head (``model.action_head``) serves
    both. The releases differ in the state/action widths, the horizon and the state dropout: each family
    declares those defaults. Keyword-only, so a family's own fields may come without defaults."""

    backbone_embedding_dim: int = 2048
    max_state_dim: int
    max_action_dim: int
    action_horizon: int
    hidden_size: int = 1024
    input_embedding_dim: int = 1536
    max_seq_len: int = 1024
    add_pos_embed: bool = True
    use_vlln: bool = True
    use_alternate_vl_dit: bool = True
    attend_text_every_n_blocks: int = 2
    max_num_embodiments: int = 32
    num_inference_timesteps: int = 4
    num_timestep_buckets: int = 1000
    state_dropout_prob: float
    model_dtype: str = "bfloat16"
    dit: DiTConfig = field(default_factory=DiTConfig)

    @property
    def denoising_timesteps(self) -> list[int]:
        """Integer timesteps fed to the network: int(k / N · buckets) for k < N (0, 250, 500, 750)."""
        n = self.num_inference_timesteps
        return [int(k / n * self.num_timestep_buckets) for k in range(n)]

    def action_head_problems(self, llm_hidden_size: int) -> list[str]:
        """What the implemented head cannot run (``llm_hidden_size``: the width of the backbone features);
        a family's ``check`` adds its backbone's problems and raises them in one line."""
        problems = []
        if self.backbone_embedding_dim != llm_hidden_size:
            problems.append(f"backbone_embedding_dim {self.backbone_embedding_dim} != LLM hidden_size {llm_hidden_size}")
        if self.dit.inner_dim != self.input_embedding_dim:
            problems.append(f"DiT heads×head_dim {self.dit.num_attention_heads}×{self.dit.attention_head_dim} "
                            f"!= input_embedding_dim {self.input_embedding_dim}")
        if self.dit.output_dim != self.hidden_size:
            problems.append(f"DiT output_dim {self.dit.output_dim} != hidden_size {self.hidden_size}")
        if self.action_horizon > self.max_seq_len:
            problems.append(f"action_horizon {self.action_horizon} > max_seq_len {self.max_seq_len}")
        if not (self.use_alternate_vl_dit and self.use_vlln and self.add_pos_embed):
            problems.append("only use_alternate_vl_dit, use_vlln and add_pos_embed all true are supported")
        if self.dit.num_layers % 4:
            problems.append(f"DiT num_layers {self.dit.num_layers} is not a multiple of 4 (text/self/image/self)")
        if self.attend_text_every_n_blocks != 2:
            problems.append(f"attend_text_every_n_blocks {self.attend_text_every_n_blocks} (only 2 is supported)")
        return problems
