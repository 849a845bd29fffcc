"""Synthetic checkpoints in the real N1.6 layout, for tests, benchmarks and docs.

``make_checkpoint`` writes what a real checkpoint folder holds (spec §5.6): config.json, sharded
safetensors + index with every real key (including the unused ``lm_head`` and SigLIP2 pooling head),
bf16 backbone and fp32 action head (the dtype mix of real fine-tunes), processor files and a
tokenizer. Weights are random with scales that keep activations O(1) through every layer, so outputs
are never degenerate. Tensors are generated one at a time and streamed to disk, so even the full
3.3 G-parameter preset never holds the model in memory.

``make_header_only_checkpoint`` writes the same files but with safetensors whose data region is a
sparse hole: every header is exact, no data is written. ``inspect`` and layout checks on the full
config run on it in milliseconds with no disk or RAM cost.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..base.artifacts import StagingFolder, check_replaceable, is_empty_dir
from ..base.errors import CheckpointError, Gr00tTrtError
from ..base.files import read_json
from .checkpoint import CONFIG_FILE, INDEX_FILE, TORCH_TO_SAFETENSORS, expected_layout
from .config import Gr00tConfig
from .presets import preset_config

#: largest shard of a full-size checkpoint (Hugging Face's default max_shard_size "5GB")
MAX_SHARD_BYTES = 5_000_000_000
#: config.json field marking a checkpoint written by this module (``--force`` may replace only those)
SYNTHETIC_MARKER_KEY = "gr00t_trt_synthetic"


# ---------------------------------------------------------------------- weights
def checkpoint_dtype(key: str) -> torch.dtype:
    """Storage dtype of a tensor: bf16 backbone, fp32 action head (like real fine-tunes)."""
    return torch.bfloat16 if key.startswith("backbone.") else torch.float32


def synthetic_tensor(key: str, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Deterministic random fp32 value of one tensor, from its key and the seed alone.

    Scales keep activations O(1): matrices N(0, 1/fan_in) (≈ 0.02 at full size; [E, in, out]
    embodiment weights use ``in``), norm weights 1 + N(0, 0.05²), biases N(0, 0.02²), embedding
    and position tables N(0, 0.5²) (so position information visibly matters), probes/tokens 0.02.
    """
    gen = torch.Generator().manual_seed(zlib.crc32(f"{seed}:{key}".encode()))  # CPU generators use 32 bits
    noise = torch.randn(shape, generator=gen)  # scaled in place below: one buffer per tensor
    leaf = key.rsplit(".", 1)[-1]
    if key.endswith(("embed_tokens.weight", "position_embedding.weight")):
        return noise.mul_(0.5)
    if leaf in ("bias", "b", "in_proj_bias"):
        return noise.mul_(0.02)
    if leaf == "weight" and len(shape) == 1:  # LayerNorm / RMSNorm
        return noise.mul_(0.05).add_(1.0)
    if leaf == "W" and len(shape) == 3:  # CategorySpecificLinear [E, in, out]
        return noise.mul_(shape[1] ** -0.5)
    if len(shape) == 2:  # nn.Linear [out, in] (also lm_head)
        return noise.mul_(shape[1] ** -0.5)
    return noise.mul_(0.02)


@torch.no_grad()
def init_synthetic_(module: nn.Module, seed: int = 0, prefix: str = "") -> nn.Module:
    """Fill a module in place with the synthetic values of ``prefix + key`` (same numbers as a
    checkpoint written by ``make_checkpoint``, before its bf16 storage rounding)."""
    for key, tensor in module.state_dict().items():
        tensor.copy_(synthetic_tensor(prefix + key, tuple(tensor.shape), seed))
    return module


def synthetic_model(config: Gr00tConfig, seed: int = 0, dtype: torch.dtype = torch.float32, **kwargs):
    """A ``Gr00tN1d6`` with synthetic weights, in memory (no checkpoint round trip)."""
    from .gr00t import Gr00tN1d6

    return init_synthetic_(Gr00tN1d6(config, **kwargs), seed).to(dtype)


# ---------------------------------------------------------------------- safetensors writing
TensorPlan = list[tuple[str, tuple[int, ...], torch.dtype]]


def plan_shards(plan: TensorPlan, max_shard_bytes: int) -> list[TensorPlan]:
    """Split tensors (in order) into shards of at most ``max_shard_bytes`` (a bigger tensor gets its own)."""
    shards: list[TensorPlan] = [[]]
    used = 0
    for entry in plan:
        nbytes = _nbytes(entry)
        if shards[-1] and used + nbytes > max_shard_bytes:
            shards.append([])
            used = 0
        shards[-1].append(entry)
        used += nbytes
    return shards


def shard_budget(plan: TensorPlan, max_shard_bytes: int) -> int:
    """Shard size limit: ``max_shard_bytes`` when the weights exceed it (the full preset, like the
    real 4.99 + 1.58 GB pair), else half the weights so that small checkpoints are sharded too."""
    total = sum(_nbytes(t) for t in plan)
    return max_shard_bytes if total > max_shard_bytes else -(-total // 2)


def _nbytes(entry: tuple[str, tuple[int, ...], torch.dtype]) -> int:
    _, shape, dtype = entry
    return math.prod(shape) * dtype.itemsize


def _header_bytes(tensors: TensorPlan) -> bytes:
    """safetensors header: JSON with contiguous data offsets, space-padded to a multiple of 8."""
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for key, shape, dtype in tensors:
        end = offset + math.prod(shape) * dtype.itemsize
        header[key] = {
            "dtype": TORCH_TO_SAFETENSORS[dtype],
            "shape": list(shape),
            "data_offsets": [offset, end],
        }
        offset = end
    raw = json.dumps(header, separators=(",", ":")).encode()
    return raw + b" " * (-len(raw) % 8)


def write_safetensors(
    path: Path, tensors: TensorPlan, fill: Callable[[str, tuple[int, ...]], torch.Tensor] | None
) -> None:
    """Write one safetensors file tensor by tensor; ``fill=None`` leaves the data region a sparse hole."""
    header = _header_bytes(tensors)
    data_bytes = sum(_nbytes(t) for t in tensors)
    with path.open("wb") as f:
        f.write(len(header).to_bytes(8, "little"))
        f.write(header)
        if fill is None:
            f.truncate(8 + len(header) + data_bytes)
            return
        for key, shape, dtype in tensors:
            value = fill(key, shape).to(dtype).contiguous()
            if value.numel():
                f.write(value.reshape(-1).view(torch.uint8).numpy())  # buffer protocol: no extra copy
            del value


def write_sharded_weights(
    folder: Path,
    plan: TensorPlan,
    fill: Callable[[str, tuple[int, ...]], torch.Tensor] | None,
    max_shard_bytes: int,
) -> list[Path]:
    """``model-0000k-of-0000n.safetensors`` files + ``model.safetensors.index.json``."""
    shards = plan_shards(plan, max_shard_bytes)
    weight_map: dict[str, str] = {}
    paths = []
    for k, shard in enumerate(shards, start=1):
        name = f"model-{k:05d}-of-{len(shards):05d}.safetensors"
        write_safetensors(folder / name, shard, fill)
        weight_map.update({key: name for key, _, _ in shard})
        paths.append(folder / name)
    index = {"metadata": {"total_size": sum(_nbytes(t) for t in plan)}, "weight_map": weight_map}
    (folder / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
    return paths


def config_json(config: Gr00tConfig, marker: dict | None = None) -> dict:
    """config.json content: our config plus the architecture tags real checkpoints carry, and the
    synthetic marker (how it was made) so that ``make-checkpoint --force`` can recognise its own folders."""
    data = {"architectures": ["Gr00tN1d6"], "model_type": "Gr00tN1d6", **config.to_dict()}
    if marker is not None:
        data[SYNTHETIC_MARKER_KEY] = marker
    return data


def is_synthetic_checkpoint(folder: Path) -> bool:
    """True when ``folder`` holds a checkpoint written by ``make_checkpoint`` / ``make_header_only_checkpoint``."""
    try:
        return SYNTHETIC_MARKER_KEY in read_json(Path(folder) / CONFIG_FILE, "config.json", expect=dict)
    except Gr00tTrtError:
        return False


def tensor_plan(config: Gr00tConfig) -> TensorPlan:
    """Every tensor of a checkpoint of this config, in state_dict order, with its storage dtype."""
    return [(key, shape, checkpoint_dtype(key)) for key, shape in expected_layout(config).items()]


# ---------------------------------------------------------------------- folders
def _write_folder(out_dir: str | Path, overwrite: bool, write: Callable[[Path], None]) -> Path:
    """Run ``write`` into a hidden, locked ``.partial`` sibling folder, then rename it to ``out_dir``: an
    interrupted run leaves only the ``.partial`` folder (removed by a later run), never something that
    looks complete. An existing ``out_dir`` is replaced only with ``overwrite`` and only when it is
    empty or a synthetic checkpoint."""
    out = Path(out_dir)
    what = "synthetic checkpoint made by gr00t-trt make-checkpoint"
    replace = overwrite or is_empty_dir(out)  # an empty folder (e.g. made by the user) needs no --force
    check_replaceable(out, replace, is_synthetic_checkpoint, what, CheckpointError)
    staging = StagingFolder(out)
    try:
        write(staging.path)
        return staging.publish(replace, is_synthetic_checkpoint, what, CheckpointError)
    except BaseException:
        staging.discard()
        raise


def make_checkpoint(
    out_dir: str | Path, preset: str = "tiny", seed: int = 0, *, overwrite: bool = False
) -> Path:
    """Write a complete synthetic checkpoint of a preset ("tiny", "small" or "full") → its folder."""
    try:
        config = preset_config(preset)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None
    plan = tensor_plan(config)
    shard_bytes = shard_budget(plan, MAX_SHARD_BYTES)

    def write(folder: Path) -> None:
        marker = {"preset": preset, "seed": seed}
        (folder / CONFIG_FILE).write_text(json.dumps(config_json(config, marker), indent=2) + "\n")
        write_sharded_weights(
            folder, plan, lambda key, shape: synthetic_tensor(key, shape, seed), shard_bytes
        )
        from .synthetic_processor import write_processor_files, write_synthetic_tokenizer

        write_processor_files(folder, config, seed)
        write_synthetic_tokenizer(folder, config)

    return _write_folder(out_dir, overwrite, write)


def make_header_only_checkpoint(
    out_dir: str | Path,
    config: Gr00tConfig,
    *,
    overwrite: bool = False,
    max_shard_bytes: int = MAX_SHARD_BYTES,
) -> Path:
    """config.json + sharded safetensors whose headers list every tensor with exact offsets and whose
    data is a sparse hole (``truncate``): real layout and sizes, no disk or RAM cost. Loading weights
    from it gives zeros; reading headers (inspect, layout checks) is exact."""
    plan = tensor_plan(config)
    shard_bytes = shard_budget(plan, max_shard_bytes)

    def write(folder: Path) -> None:
        marker = {"preset": None, "header_only": True}
        (folder / CONFIG_FILE).write_text(json.dumps(config_json(config, marker), indent=2) + "\n")
        write_sharded_weights(folder, plan, None, shard_bytes)

    return _write_folder(out_dir, overwrite, write)
