"""GR00T N1.6's checkpoint layout and loader: the tensors a checkpoint of a config holds (the model's and
the known-unused ones), their strict accounting, and the model built from them (eagerly or lazily)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path

import torch

from ...base.errors import CheckpointError
from ...model.checkpoint import (
    CONFIG_FILE,
    WEIGHT_DTYPES,
    LayoutCheck,
    LazyModel,
    StoredTensor,
    load_state_dict,
    parameters_on_meta,
    read_tensor_index,
    resolve_checkpoint,
)
from .config import Gr00tConfig

LM_HEAD_KEY = "backbone.model.language_model.lm_head.weight"
VISION_HEAD_PREFIX = "backbone.model.vision_model.vision_model.head."
MASK_TOKEN_KEY = "action_head.mask_token"


def is_known_unused(key: str) -> bool:
    """Stored by real checkpoints, never used by GR00T (skipped explicitly when loading)."""
    return key == LM_HEAD_KEY or key == MASK_TOKEN_KEY or key.startswith(VISION_HEAD_PREFIX)


def known_unused_layout(config: Gr00tConfig) -> dict[str, tuple[int, ...]]:
    """Shapes of the unused tensors a checkpoint of this config normally carries: lm_head, the
    SigLIP2 pooling head and, only when state dropout was trained, ``mask_token``."""
    d = config.backbone.vision.hidden_size
    i = config.backbone.vision.intermediate_size
    text = config.backbone.text
    head = {
        "probe": (1, 1, d),
        "attention.in_proj_weight": (3 * d, d),
        "attention.in_proj_bias": (3 * d,),
        "attention.out_proj.weight": (d, d),
        "attention.out_proj.bias": (d,),
        "layernorm.weight": (d,),
        "layernorm.bias": (d,),
        "mlp.fc1.weight": (i, d),
        "mlp.fc1.bias": (i,),
        "mlp.fc2.weight": (d, i),
        "mlp.fc2.bias": (d,),
    }
    layout = {VISION_HEAD_PREFIX + k: v for k, v in head.items()}
    layout[LM_HEAD_KEY] = (text.vocab_size, text.hidden_size)
    if config.state_dropout_prob > 0:
        layout[MASK_TOKEN_KEY] = (1, 1, config.input_embedding_dim)
    return layout


@functools.lru_cache(maxsize=8)
def _model_layout(config: Gr00tConfig) -> tuple[tuple[str, tuple[int, ...]], ...]:
    from .model import Gr00tN1d6

    with torch.device("meta"):
        model = Gr00tN1d6(config)
    return tuple((k, tuple(v.shape)) for k, v in model.state_dict().items())


def model_layout(config: Gr00tConfig) -> dict[str, tuple[int, ...]]:
    """Keys and shapes ``Gr00tN1d6(config)`` loads, from a meta-device instance (no memory used)."""
    return dict(_model_layout(config))


def expected_layout(config: Gr00tConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor a checkpoint of this config holds: the model's plus the known-unused ones."""
    return {**model_layout(config), **known_unused_layout(config)}


def compare_layout(found: Mapping[str, StoredTensor | tuple[int, ...]], config: Gr00tConfig) -> LayoutCheck:
    """Account for every tensor: missing, unexpected, wrong shape, or known-unused (skipped). The expected
    layout is computed from the config (``config_layout``): no model is built for checking."""
    from .layout import config_layout

    wanted = config_layout(config)
    check = LayoutCheck()
    for key, value in found.items():
        shape = value.shape if isinstance(value, StoredTensor) else tuple(value)
        if isinstance(value, StoredTensor) and value.dtype not in WEIGHT_DTYPES:
            check.wrong_dtype.append((key, value.dtype))
        if key in wanted:
            if tuple(shape) != wanted[key]:
                check.misshaped.append((key, wanted[key], tuple(shape)))
        elif is_known_unused(key):
            check.skipped.append(key)
        else:
            check.unexpected.append(key)
    check.missing = [k for k in wanted if k not in found]
    return check


def check_layout(
    found: Mapping[str, StoredTensor | tuple[int, ...]], config: Gr00tConfig, source: str = "checkpoint"
) -> list[str]:
    """Raise a one-line CheckpointError unless the tensors match the model exactly; returns the
    known-unused keys that were skipped."""
    check = compare_layout(found, config)
    if not check.ok:
        raise CheckpointError(
            f"{source} does not match the GR00T N1.6 model its config.json describes — {check.problems()} "
            "— is config.json from the same checkpoint?"
        )
    return check.skipped


def load_model(
    checkpoint: str | Path,
    dtype: torch.dtype = torch.float32,
    *,
    attn_implementation: str = "sdpa",
    local_files_only: bool = False,
):
    """Load ``Gr00tN1d6`` from a checkpoint folder or Hub id → (model in eval mode, config, folder).

    The config comes from config.json; the tensors are checked against the model strictly before
    anything is read; known-unused tensors are skipped; every parameter and floating buffer (rotary
    frequencies) is cast to ``dtype``, as the original's ``model.to(dtype)`` does.
    """
    lazy, config, folder = open_model(
        checkpoint, dtype, attn_implementation=attn_implementation, local_files_only=local_files_only
    )
    state = load_state_dict(folder, lazy.index, lazy.keys, dtype)
    lazy.model.load_state_dict(state, strict=True, assign=True)
    return lazy.model, config, folder


def open_model(
    checkpoint: str | Path,
    dtype: torch.dtype = torch.float32,
    *,
    attn_implementation: str = "sdpa",
    local_files_only: bool = False,
) -> tuple[LazyModel, Gr00tConfig, Path]:
    """``Gr00tN1d6`` built on the meta device from a checkpoint's config, its tensors checked against the
    model but not read → (LazyModel, config, folder); ``load_model`` reads them all."""
    from .model import Gr00tN1d6

    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise CheckpointError(
            f"load_model: dtype {dtype} — expected torch.float32, torch.bfloat16 or torch.float16"
        )
    folder = resolve_checkpoint(checkpoint, local_files_only=local_files_only)
    config = Gr00tConfig.from_file(folder / CONFIG_FILE)
    index = read_tensor_index(folder)
    skipped = set(check_layout(index, config, source=f"checkpoint {folder}"))
    with parameters_on_meta():
        model = Gr00tN1d6(config, attn_implementation=attn_implementation)
    # the original casts the whole model (Gr00tPolicy: model.to(dtype=bf16)), which also rounds the
    # floating buffers — the rotary inv_freq among them; do the same so a bf16 reference is faithful
    # (the parameters are read in ``dtype``)
    model.to(dtype)
    model.requires_grad_(False)
    model.eval()
    keys = [k for k in index if k not in skipped]
    return LazyModel(model, folder, index, keys, dtype), config, folder
