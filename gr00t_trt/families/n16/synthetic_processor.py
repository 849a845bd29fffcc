"""Processor files and tokenizer of synthetic checkpoints, in the real formats.

``write_processor_files`` writes processor_config.json (Gr00tN1d6Processor layout, enums by name),
statistics.json and embodiment_id.json for three small embodiments modelled on real N1.6 ones
(real tags and ids), sized to the config. ``write_synthetic_tokenizer`` writes a byte-level BPE
tokenizer with the Qwen/Eagle added-token layout so that the synthetic prompt path is real.

numpy/tokenizers only (it reuses the processing package, which is torch-free).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import AddedToken, trainers
from tokenizers.pre_tokenizers import ByteLevel

from ...base.errors import ConfigError
from ...base.files import write_json
from ...processing.prompt import EAGLE_CHAT_TEMPLATE
from ...processing.tokenizer import (
    EAGLE_ADDED_TOKENS,
    QWEN_ADDED_TOKENS,
    EagleTokenizer,
    add_tokens_in_order,
    qwen2_tokenizer,
    save_tokenizer,
)
from .config import Gr00tConfig
from .processing.modality import BUILTIN_EMBODIMENT_IDS


@dataclass(frozen=True)
class _Action:
    key: str
    dim: int
    rep: str = "ABSOLUTE"
    type: str = "NON_EEF"
    format: str = "DEFAULT"
    state_key: str | None = None


@dataclass(frozen=True)
class _Embodiment:
    """A synthetic embodiment declared as data; ``horizon`` is capped by the model's action_horizon."""

    tag: str
    video: tuple[str, ...]
    state: tuple[tuple[str, int], ...]
    actions: tuple[_Action, ...]
    horizon: int
    language_key: str
    sin_cos: tuple[str, ...] = ()
    state_mean_std: tuple[str, ...] = ()
    action_mean_std: tuple[str, ...] = ()


#: libero_panda-like 2-camera EEF arm; unitree_g1-like joint robot; a new_embodiment with a rotvec EEF.
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


def _check_fits(emb: _Embodiment, config: Gr00tConfig) -> None:
    state_width = sum(d * (2 if k in emb.sin_cos else 1) for k, d in emb.state)
    action_width = sum(a.dim for a in emb.actions)
    if state_width > config.max_state_dim or action_width > config.max_action_dim:
        raise ConfigError(
            f"synthetic embodiment {emb.tag!r} needs max_state_dim ≥ {state_width} and max_action_dim ≥ "
            f"{action_width}, the config has {config.max_state_dim} and {config.max_action_dim}"
        )


def _modality_config(emb: _Embodiment, horizon: int) -> dict:
    def modality(keys, delta, **extra):
        return {"delta_indices": delta, "modality_keys": list(keys), "sin_cos_embedding_keys": None,
                "mean_std_embedding_keys": None, "action_configs": None, **extra}  # fmt: skip

    return {
        "video": modality(emb.video, [0]),
        "state": modality(
            [k for k, _ in emb.state], [0],
            sin_cos_embedding_keys=list(emb.sin_cos) or None,
            mean_std_embedding_keys=list(emb.state_mean_std) or None,
        ),
        "action": modality(
            [a.key for a in emb.actions], list(range(horizon)),
            mean_std_embedding_keys=list(emb.action_mean_std) or None,
            action_configs=[{"rep": a.rep, "type": a.type, "format": a.format, "state_key": a.state_key}
                            for a in emb.actions],
        ),
        "language": modality([emb.language_key], [0]),
    }  # fmt: skip


def _stats(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> dict:
    """min < q01 ≤ mean ≤ q99 < max and std > 0, elementwise; any shape."""
    span = hi - lo
    q01 = lo + span * rng.uniform(0.01, 0.05, lo.shape)
    q99 = hi - span * rng.uniform(0.01, 0.05, lo.shape)
    mean = q01 + (q99 - q01) * rng.uniform(0.3, 0.7, lo.shape)
    std = span * rng.uniform(0.1, 0.3, lo.shape)
    return {name: np.round(v, 6).tolist() for name, v in
            (("min", lo), ("max", hi), ("mean", mean), ("std", std), ("q01", q01), ("q99", q99))}  # fmt: skip


def _pose_bounds(dim: int, fmt: str) -> tuple[np.ndarray, np.ndarray]:
    """Plausible absolute bounds: xyz within ±0.6 m, rotation parts within their natural range."""
    if fmt == "XYZ_ROT6D":
        return np.array([-0.6, -0.6, 0.0] + [-1.0] * 6), np.array([0.6, 0.6, 0.9] + [1.0] * 6)
    if fmt == "XYZ_ROTVEC":
        return np.array([-0.6, -0.6, 0.0] + [-np.pi] * 3), np.array([0.6, 0.6, 0.9] + [np.pi] * 3)
    return -np.ones(dim) * 1.5, np.ones(dim) * 1.5


def _statistics(emb: _Embodiment, horizon: int, rng: np.random.Generator) -> dict:
    formats = {a.state_key or a.key: a.format for a in emb.actions if a.rep == "RELATIVE"}
    state = {}
    for key, dim in emb.state:
        lo, hi = _pose_bounds(dim, formats.get(key, "DEFAULT"))
        jitter = rng.uniform(0.0, 0.1, dim)
        state[key] = _stats(rng, lo - jitter, hi + jitter)
    action, relative = {}, {}
    for a in emb.actions:
        lo, hi = _pose_bounds(a.dim, a.format)
        action[a.key] = _stats(rng, lo, hi)
        if a.rep == "RELATIVE":
            # per-step spread grows with the step index: [H, dim]
            growth = np.linspace(0.05, 0.3, horizon)[:, None] * rng.uniform(0.5, 1.5, (1, a.dim))
            # relative poses sit near the identity: rot6d rows (1, 0, 0), (0, 1, 0); rotvec and joints 0
            center = np.zeros(a.dim)
            if a.format == "XYZ_ROT6D":
                center[3:] = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
            relative[a.key] = _stats(rng, center - growth, center + growth)
    return {"state": state, "action": action, "relative_action": relative}


# ------------------------------------------------------------------------------------------ tokenizer
#: in-code training text: robot instructions, the chat-template words and digits
_VERBS = ("pick up", "put", "place", "move", "push", "open", "close", "turn on", "turn off", "stack", "grasp",
          "lift", "slide", "rotate", "pour", "wipe", "fold", "insert", "press", "pull")  # fmt: skip
_OBJECTS = ("the apple", "the red block", "the blue cup", "the bowl", "the drawer", "the microwave", "the sponge",
            "the bottle", "the towel", "the lid", "the banana", "the green cube", "the plate", "the faucet",
            "the door", "the mug", "the box", "the pan", "the can", "the knife")  # fmt: skip
_PLACES = ("on the table", "in the basket", "into the sink", "onto the shelf", "next to the plate",
           "to the left", "to the right", "in the drawer", "on the stove", "behind the box")  # fmt: skip
_TEMPLATE_WORDS = ("system", "user", "assistant", "You are a helpful assistant.", "image", "video",
                   "<image 1>", "<image 2>", "<image 3>", "\n")  # fmt: skip


def synthetic_corpus() -> list[str]:
    """Deterministic training text for the synthetic tokenizer."""
    lines = [f"{v} {o} {p}" for v in _VERBS for o in _OBJECTS for p in _PLACES]
    lines += [" ".join(_TEMPLATE_WORDS)] * 20
    lines += [" ".join(str(i) for i in range(k, k + 10)) for k in range(0, 1000, 10)]
    return lines


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


def synthetic_bpe(base: int):
    """A byte-level BPE of exactly ``base`` regular tokens, trained on ``synthetic_corpus`` and padded with
    inert filler tokens when the corpus runs out of merges (the added tokens come after it)."""
    alphabet = sorted(ByteLevel.alphabet())
    if base < len(alphabet):
        raise ConfigError(f"base vocabulary {base} is smaller than the 256-symbol byte alphabet")
    trained = qwen2_tokenizer({}, [])
    trainer = trainers.BpeTrainer(vocab_size=base, min_frequency=2, show_progress=False, special_tokens=[],
                                  initial_alphabet=alphabet)  # fmt: skip
    trained.train_from_iterator(synthetic_corpus(), trainer=trainer)
    model = json.loads(trained.to_str())["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    filler = 0
    while len(vocab) < base:  # never produced by a merge, so never emitted: they only fix the size
        vocab[f"<|gr00t_trt_filler_{filler}|>"] = len(vocab)
        filler += 1
    return qwen2_tokenizer(vocab, merges)


def write_synthetic_tokenizer(out_dir: Path, config: Gr00tConfig) -> None:
    """Write the synthetic tokenizer (tokenizer.json, chat_template.json, tokenizer_config.json)."""
    tok = build_synthetic_tokenizer(config)
    tok.check(config.backbone.image_token_index, config.backbone.text.vocab_size, "synthetic tokenizer")
    save_tokenizer(tok, out_dir)


__all__ = ["build_synthetic_tokenizer", "synthetic_bpe", "write_processor_files", "write_synthetic_tokenizer"]
