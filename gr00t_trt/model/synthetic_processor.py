"""Synthetic processor-file pieces every family's synthetic checkpoints share: embodiments described as
data, their modality configs and random-but-plausible statistics in Isaac-GR00T's formats, and a small
byte-level BPE trained on a synthetic robot-instruction corpus.

numpy/tokenizers only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from tokenizers import trainers
from tokenizers.pre_tokenizers import ByteLevel

from ..base.errors import ConfigError
from ..processing.tokenizer import qwen2_tokenizer


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
def _check_fits(emb: _Embodiment, config: Any) -> None:
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
