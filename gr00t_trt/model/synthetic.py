"""Synthetic checkpoint pieces every family shares: deterministic synthetic weights per key, sharded
safetensors writing (streamed one tensor at a time, or headers over a sparse hole) and the staged,
replace-only-our-own output folder. Each family's own ``synthetic`` module writes its config, tensor
list and processor files with them.
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
from .checkpoint import CONFIG_FILE, INDEX_FILE, TORCH_TO_SAFETENSORS

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


def is_synthetic_checkpoint(folder: Path) -> bool:
    """True when ``folder`` holds a checkpoint written by ``make_checkpoint`` / ``make_header_only_checkpoint``."""
    try:
        return SYNTHETIC_MARKER_KEY in read_json(Path(folder) / CONFIG_FILE, "config.json", expect=dict)
    except Gr00tTrtError:
        return False


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
