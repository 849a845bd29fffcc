"""Synthetic GR00T N1.7 checkpoints: the real key names, shapes, sharding and sidecar files, random weights.

The writing machinery is shared (``gr00t_trt.model.synthetic``: deterministic per-key values, tensors
streamed one at a time into sharded safetensors + index, a staged folder published by rename, the
synthetic marker that ``--force`` checks); this module only supplies N1.7's layout and sidecars:
config.json (Gr00tN1d7), processor_config.json (Gr00tN1d7Processor with modality configs of a few
real N1.7 embodiments, DROID with two frames per view among them), statistics.json (q01/q99 and
per-step relative stats) and embodiment_id.json (N1.7's ids, spec §6.2).

``make_header_only_checkpoint`` writes exact headers over sparse data (all bf16, like the release):
``inspect`` and layout checks of the full 3.5 G-parameter layout cost milliseconds and no disk.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...base.errors import CheckpointError, ConfigError
from ...base.files import write_json
from ...model.synthetic import (
    MAX_SHARD_BYTES,
    SYNTHETIC_MARKER_KEY,
    _write_folder,
    checkpoint_dtype,
    init_synthetic_,
    shard_budget,
    synthetic_tensor,
    write_sharded_weights,
)
from ...model.synthetic_processor import _Action, _check_fits, _Embodiment, _modality_config, _statistics
from .config import BUILTIN_EMBODIMENT_IDS, CONFIG_FILE, QWEN_ADDED_TOKENS, N17Config, preset_config
from .layout import config_layout
from .processing.tokenizer import save_qwen3_vl_tokenizer

PROCESSOR_FILE = "processor_config.json"
STATISTICS_FILE = "statistics.json"
EMBODIMENT_ID_FILE = "embodiment_id.json"

#: storage dtype tag → torch dtype
_DTYPES = {"BF16": torch.bfloat16, "F32": torch.float32}


def tensor_plan(config: N17Config, dtype: torch.dtype | None = None) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    """Every tensor of a checkpoint of this config with its storage dtype: ``dtype`` for all (the
    release is all bf16), or None for N1.6's synthetic mix (bf16 backbone, fp32 action head)."""
    return [(key, shape, dtype or checkpoint_dtype(key)) for key, (shape, _) in config_layout(config).items()]


def synthetic_model(config: N17Config, seed: int = 0, dtype: torch.dtype = torch.float32):
    """A Gr00tN1d7 with the synthetic values in memory (those ``make_checkpoint`` writes, before their
    storage rounding), for tests and benchmarks that need no checkpoint round trip."""
    from .model import Gr00tN1d7

    return init_synthetic_(Gr00tN1d7(config), seed).to(dtype).requires_grad_(False)


# ---------------------------------------------------------------------- sidecar files
#: (embodiment, video delta_indices): real N1.7 tags and modality keys (spec §6.3), sized down where the
#: original is wider than a synthetic preset's dims; DROID reads two frames per view
SYNTHETIC_EMBODIMENTS: tuple[tuple[_Embodiment, tuple[int, ...]], ...] = (
    (_Embodiment(
        tag="oxe_droid_relative_eef_relative_joint",
        video=("exterior_image_1_left", "wrist_image_left"),
        state=(("eef_9d", 9), ("gripper_position", 1), ("joint_position", 7)),
        actions=(_Action("eef_9d", 9, "RELATIVE", "EEF", "XYZ_ROT6D", "eef_9d"), _Action("gripper_position", 1),
                 _Action("joint_position", 7, "RELATIVE", "NON_EEF")),
        horizon=40, language_key="annotation.language.language_instruction"), (-15, 0)),
    (_Embodiment(
        tag="libero_sim", video=("image", "wrist_image"),
        state=(("x", 1), ("y", 1), ("z", 1), ("roll", 1), ("pitch", 1), ("yaw", 1), ("gripper", 2)),
        actions=(_Action("x", 1), _Action("y", 1), _Action("z", 1), _Action("roll", 1), _Action("pitch", 1),
                 _Action("yaw", 1), _Action("gripper", 1)),
        horizon=16, language_key="annotation.human.action.task_description"), (0,)),
    (_Embodiment(
        tag="simpler_env_widowx", video=("image_0",),
        state=(("x", 1), ("y", 1), ("z", 1), ("roll", 1), ("pitch", 1), ("yaw", 1), ("pad", 1), ("gripper", 1)),
        actions=(_Action("x", 1), _Action("y", 1), _Action("z", 1), _Action("roll", 1), _Action("pitch", 1),
                 _Action("yaw", 1), _Action("gripper", 1)),
        horizon=8, language_key="annotation.human.action.task_description"), (0,)),
)  # fmt: skip


def processor_kwargs(config: N17Config) -> dict:
    """The released processor settings (spec §2.6), sized to the config."""
    return {
        "image_crop_size": [230, 230], "image_target_size": [256, 256], "use_albumentations": True,
        "letter_box_transform": False, "random_rotation_angle": None, "color_jitter_params": None,
        "shortest_image_edge": 256, "crop_fraction": 0.95, "model_name": config.model_name, "model_type": "qwen",
        "formalize_language": True, "max_state_dim": config.max_state_dim, "max_action_dim": config.max_action_dim,
        "max_action_horizon": config.action_horizon, "use_percentiles": config.use_percentiles,
        "clip_outliers": True, "apply_sincos_state_encoding": False, "use_relative_action": True,
        "exclude_state": False, "state_dropout_prob": config.state_dropout_prob, "use_mean_std": False,
    }  # fmt: skip


def write_processor_files(folder: Path, config: N17Config, seed: int = 0) -> None:
    """processor_config.json, statistics.json and embodiment_id.json for ``SYNTHETIC_EMBODIMENTS``."""
    rng = np.random.default_rng(seed)
    modality_configs, statistics = {}, {}
    for emb, video_deltas in SYNTHETIC_EMBODIMENTS:
        _check_fits(emb, config)  # ConfigError, a CheckpointError
        horizon = min(emb.horizon, config.action_horizon)
        modality = _modality_config(emb, horizon)
        modality["video"]["delta_indices"] = list(video_deltas)
        modality_configs[emb.tag] = modality
        statistics[emb.tag] = _statistics(emb, horizon, rng)
    kwargs = {"modality_configs": modality_configs, **processor_kwargs(config)}
    write_json(folder / PROCESSOR_FILE, {"processor_class": "Gr00tN1d7Processor", "processor_kwargs": kwargs})
    write_json(folder / STATISTICS_FILE, statistics)
    write_json(folder / EMBODIMENT_ID_FILE, {emb.tag: BUILTIN_EMBODIMENT_IDS[emb.tag] for emb, _ in SYNTHETIC_EMBODIMENTS})


def config_json(config: N17Config, marker: dict) -> dict:
    """config.json: the release's keys plus the synthetic marker (what ``--force`` may replace)."""
    return {**config.to_dict(), SYNTHETIC_MARKER_KEY: marker}


# ---------------------------------------------------------------------- folders
def make_checkpoint(out_dir: str | Path, preset: str = "tiny", seed: int = 0, *, overwrite: bool = False) -> Path:
    """A complete synthetic N1.7 checkpoint of a preset ("tiny", "small" or "full") → its folder."""
    try:
        config = preset_config(preset)
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None
    plan = tensor_plan(config)

    def write(folder: Path) -> None:
        write_json(folder / CONFIG_FILE, config_json(config, {"preset": preset, "seed": seed, "model": "n1.7"}))
        write_sharded_weights(folder, plan, lambda key, shape: synthetic_tensor(key, shape, seed),
                              shard_budget(plan, MAX_SHARD_BYTES))
        write_processor_files(folder, config, seed)
        if preset != "full":  # the release has none (spec §2.5); the presets carry one for their small vocab
            save_qwen3_vl_tokenizer(synthetic_tokenizer(config), folder)

    return _write_folder(out_dir, overwrite, write)


def synthetic_tokenizer(config: N17Config):
    """Qwen3-VL's layout at a preset's size: a synthetic byte-level BPE of ``vocab_size − 26`` tokens,
    then Qwen's 26 added tokens, so every special token sits at the config's id."""
    from ...model.synthetic_processor import synthetic_bpe
    from ...processing.tokenizer import add_tokens_in_order
    from .processing.tokenizer import Qwen3VLTokenizer, qwen_added_tokens

    base = config.backbone.text.vocab_size - QWEN_ADDED_TOKENS
    tok = synthetic_bpe(base)
    add_tokens_in_order(tok, qwen_added_tokens(), base, "synthetic N1.7 tokenizer")
    qwen = Qwen3VLTokenizer(tok).check("synthetic N1.7 tokenizer")
    if qwen.image_token_id != config.backbone.image_token_id:
        raise CheckpointError(f"synthetic tokenizer puts <|image_pad|> at {qwen.image_token_id}, the config at "
                              f"{config.backbone.image_token_id}")
    return qwen


def make_header_only_checkpoint(out_dir: str | Path, config: N17Config | None = None, *, dtype: str = "BF16",
                                overwrite: bool = False) -> Path:
    """config.json, processor files and sharded safetensors whose headers are exact and whose data is
    a sparse hole (default: the full release layout, all bf16 — 6,910,361,856 bytes in 2 shards)."""
    config = config or preset_config("full")
    plan = tensor_plan(config, _DTYPES[dtype])

    def write(folder: Path) -> None:
        write_json(folder / CONFIG_FILE, config_json(config, {"preset": None, "header_only": True, "model": "n1.7"}))
        write_sharded_weights(folder, plan, None, shard_budget(plan, MAX_SHARD_BYTES))
        write_processor_files(folder, config)

    return _write_folder(out_dir, overwrite, write)

