"""Processor files and tokenizer of synthetic checkpoints, in the real formats.

``write_processor_files`` writes processor_config.json (Gr00tN1d6Processor layout, enums by name),
statistics.json and embodiment_id.json for three small embodiments modelled on real N1.6 ones
(real tags and ids), sized to the config. ``write_synthetic_tokenizer`` writes a byte-level BPE
tokenizer with the Qwen/Eagle added-token layout so that the synthetic prompt path is real.

numpy/tokenizers only (it reuses the processing package, which is torch-free).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tokenizers import AddedToken

from ...base.errors import ConfigError
from ...base.files import write_json
from ...model.synthetic_processor import (
    _Action,
    _check_fits,
    _Embodiment,
    _modality_config,
    _statistics,
    synthetic_bpe,
)
from ...processing.prompt import EAGLE_CHAT_TEMPLATE
from ...processing.tokenizer import (
    EAGLE_ADDED_TOKENS,
    QWEN_ADDED_TOKENS,
    EagleTokenizer,
    add_tokens_in_order,
    save_tokenizer,
)
from .config import Gr00tConfig
from .processing.modality import BUILTIN_EMBODIMENT_IDS

SYNTHETIC_EMBODIMENTS = (
    _Embodiment(
        tag="libero_panda",
        video=("image", "wrist_image"),
        state=(("eef_pose", 9), ("gripper", 2)),
        actions=(_Action("eef_pose", 9, "RELATIVE", "EEF", "XYZ_ROT6D", "eef_pose"), _Action("gripper", 1)),
        horizon=16,
        language_key="annotation.human.action.task_description",
        action_mean_std=("gripper",),
    ),
    _Embodiment(
        tag="unitree_g1",
        video=("ego_view",),
        state=(("left_arm", 5), ("left_hand", 3), ("waist", 3)),
        actions=(_Action("left_arm", 5, "RELATIVE", "NON_EEF", "DEFAULT"), _Action("left_hand", 3)),
        horizon=30,
        language_key="annotation.human.task_description",
        sin_cos=("waist",),
    ),
    _Embodiment(
        tag="new_embodiment",
        video=("front",),
        state=(("eef", 6), ("gripper", 1)),
        actions=(_Action("eef", 6, "RELATIVE", "EEF", "XYZ_ROTVEC"), _Action("gripper", 1)),
        horizon=8,
        language_key="task",
        state_mean_std=("gripper",),
    ),
)


# ------------------------------------------------------------------------------------------ processor files
def write_processor_files(out_dir: Path, config: Gr00tConfig, seed: int) -> None:
    """Write processor_config.json, statistics.json and embodiment_id.json into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    modality_configs, statistics = {}, {}
    for emb in SYNTHETIC_EMBODIMENTS:
        horizon = min(emb.horizon, config.action_horizon)
        _check_fits(emb, config)
        modality_configs[emb.tag] = _modality_config(emb, horizon)
        statistics[emb.tag] = _statistics(emb, horizon, rng)
    processor_config = {
        "processor_class": "Gr00tN1d6Processor",
        "processor_kwargs": {
            "modality_configs": modality_configs,
            "image_crop_size": None,
            "image_target_size": None,
            "use_albumentations": True,
            "random_rotation_angle": None,
            "color_jitter_params": None,
            "shortest_image_edge": 256,
            "crop_fraction": 0.95,
            "model_name": config.model_name,
            "model_type": "eagle",
            "formalize_language": True,
            "max_state_dim": config.max_state_dim,
            "max_action_dim": config.max_action_dim,
            "max_action_horizon": config.action_horizon,
            "use_percentiles": False,
            "clip_outliers": True,
            "apply_sincos_state_encoding": True,
            "use_relative_action": True,
        },
    }
    ids = {emb.tag: BUILTIN_EMBODIMENT_IDS[emb.tag] for emb in SYNTHETIC_EMBODIMENTS}
    write_json(out_dir / "processor_config.json", processor_config)
    write_json(out_dir / "statistics.json", statistics)
    write_json(out_dir / "embodiment_id.json", ids)


def build_synthetic_tokenizer(config: Gr00tConfig) -> EagleTokenizer:
    """Byte-level BPE of ``image_token_index − 26`` regular tokens (trained on ``synthetic_corpus``,
    then padded with inert filler tokens when the corpus runs out of merges — always for the full
    151,643-token preset), then Qwen's 26 and Eagle's 11 added tokens in their real order and flags."""
    text, base = config.backbone.text, config.backbone.image_token_index - len(QWEN_ADDED_TOKENS)
    if text.vocab_size != config.backbone.image_token_index + len(EAGLE_ADDED_TOKENS):
        raise ConfigError(
            f"vocab_size {text.vocab_size} != image_token_index {config.backbone.image_token_index} + "
            f"{len(EAGLE_ADDED_TOKENS)} (Eagle's tokens follow <IMG_CONTEXT>)"
        )
    tok = synthetic_bpe(base)
    added = [AddedToken(t, special=s, normalized=False) for t, s in QWEN_ADDED_TOKENS]
    added += [AddedToken(t, special=True, normalized=False) for t in EAGLE_ADDED_TOKENS]
    add_tokens_in_order(tok, added, base, "synthetic tokenizer")
    return EagleTokenizer(tok, chat_template=EAGLE_CHAT_TEMPLATE)


def write_synthetic_tokenizer(out_dir: Path, config: Gr00tConfig) -> None:
    """Write the synthetic tokenizer (tokenizer.json, chat_template.json, tokenizer_config.json)."""
    tok = build_synthetic_tokenizer(config)
    tok.check(config.backbone.image_token_index, config.backbone.text.vocab_size, "synthetic tokenizer")
    save_tokenizer(tok, out_dir)


__all__ = ["build_synthetic_tokenizer", "synthetic_bpe", "write_processor_files", "write_synthetic_tokenizer"]
