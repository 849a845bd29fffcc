"""Checkpoint I/O every family shares: find the folder, read safetensors headers, read tensors strictly.

A checkpoint is a local folder or a Hugging Face id (spec §5.6): config.json,
``model.safetensors`` or ``model-0000k-of-0000n.safetensors`` + ``model.safetensors.index.json``.
Tensors are read with safetensors only (nothing is ever unpickled). Headers are parsed here by hand
so that inspecting even the full 3B checkpoint costs a few kilobytes of reads.

Accounting is strict: every tensor the model expects must be present with its shape, every tensor
present must be expected, and tensors real checkpoints carry but GR00T never uses are skipped
explicitly and reported by name (``LayoutCheck``; each family lists its own expected and unused keys).
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..base.errors import CheckpointError
from ..base.files import parse_json, read_json
from ..families.registry import DEFAULT_FAMILY

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
CONFIG_FILE = "config.json"

#: files fetched from the Hub: configs/statistics/ids (json), weights, tokenizer files
HUB_ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "tokenizer*", "vocab*", "merges*"]

#: bytes per element of each safetensors dtype tag
DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip

#: safetensors dtype tag of each torch dtype we write
TORCH_TO_SAFETENSORS = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16"}

#: dtypes GR00T's weights may be stored in (an I32 header over F32 bytes must not be reinterpreted)
WEIGHT_DTYPES = ("F32", "BF16", "F16")

#: sanity bound for a header's JSON (the real index of ~1100 tensors is ~120 kB)
MAX_HEADER_BYTES = 100_000_000

# Keys the real checkpoints store but GR00T never reads (spec §2).


@dataclass(frozen=True)
class StoredTensor:
    """One tensor as described by a safetensors header (no data read)."""

    dtype: str  # safetensors tag, e.g. "BF16"
    shape: tuple[int, ...]
    file: str  # file name inside the checkpoint folder
    nbytes: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


# ---------------------------------------------------------------------- resolving
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_checkpoint(checkpoint: str | Path, *, local_files_only: bool = False) -> Path:
    """A local checkpoint folder, or the snapshot folder of a Hugging Face id (downloaded if needed)."""
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(
            f"checkpoint {str(checkpoint)!r} is a file — expected a checkpoint folder or a Hugging Face id"
        )
    text = str(checkpoint)
    if not _HUB_ID.match(text):
        raise CheckpointError(
            f"checkpoint folder not found: {text!r} — expected an existing folder or a Hugging Face id like "
            f"{DEFAULT_FAMILY.hub_id!r}"
        )
    return _hub_snapshot(text, HUB_ALLOW_PATTERNS, local_files_only)


def hub_offline() -> bool:
    """True when the Hub cannot be reached: HF_HUB_OFFLINE is set, or (no proxy configured) a TCP connection
    to its host fails within 2 s. Without this check the Hub client spends 10 s and more on retries before
    falling back to its cache or failing."""
    import os
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return True
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return False  # the proxy decides; a direct probe would say nothing
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=2.0).close()
    except OSError:
        return True
    return False


def _hub_snapshot(repo_id: str, patterns: list[str] | tuple[str, ...], local_files_only: bool = False) -> Path:
    """The snapshot folder of ``repo_id`` (only ``patterns``), from the Hub or, offline, from the local cache."""
    from huggingface_hub import snapshot_download

    offline = local_files_only or hub_offline()
    try:
        return Path(snapshot_download(repo_id, allow_patterns=list(patterns), local_files_only=offline))
    except Exception as exc:  # offline, unknown repo, gated, network: all end the same way for the user
        raise CheckpointError(_hub_failure(repo_id, "download checkpoint", exc, offline)) from None


def _hub_failure(repo_id: str, what: str, exc: Exception, offline: bool) -> str:
    from huggingface_hub import constants

    if offline:
        return (f"could not {what} {repo_id!r}: the Hugging Face Hub is not reachable (or HF_HUB_OFFLINE is set) and "
                f"it is not in the local cache ({constants.HF_HUB_CACHE}) — pass a local checkpoint folder, or "
                "download it once where the Hub is reachable (the cache, or HF_HUB_CACHE, is then used offline)")
    return (f"could not {what} {repo_id!r} from the Hugging Face Hub ({type(exc).__name__}) — check the id and "
            "your network, or pass a local checkpoint folder (offline: HF_HUB_OFFLINE=1 uses the local cache)")


def read_hub_tensor_index(repo_id: str) -> dict[str, StoredTensor]:
    """Every tensor of a Hub checkpoint from its safetensors headers, fetched by HTTP range requests
    (a few hundred kilobytes instead of the 6.6 GB of weights)."""
    from huggingface_hub import get_safetensors_metadata

    try:
        meta = get_safetensors_metadata(repo_id)
    except Exception as exc:
        raise CheckpointError(_hub_failure(repo_id, "read the safetensors headers of", exc, False)) from None
    result: dict[str, StoredTensor] = {}
    for file_name, file_meta in meta.files_metadata.items():
        for key, info in file_meta.tensors.items():
            begin, end = info.data_offsets
            result[key] = StoredTensor(info.dtype, tuple(info.shape), file_name, end - begin)
    return result


def resolve_checkpoint_headers(checkpoint: str | Path) -> tuple[Path, dict[str, StoredTensor]]:
    """(folder with the checkpoint's JSON files, tensor index) without downloading any weights:
    a local folder is read directly; for a Hub id only ``*.json`` is fetched plus the headers."""
    path = Path(checkpoint).expanduser()
    if path.is_dir() or path.exists() or not _HUB_ID.match(str(checkpoint)):
        folder = resolve_checkpoint(checkpoint)
        return folder, read_tensor_index(folder)
    if hub_offline():  # the headers come by range requests: offline, only a fully cached checkpoint has them
        folder = _hub_snapshot(str(checkpoint), HUB_ALLOW_PATTERNS, local_files_only=True)
        return folder, read_tensor_index(folder)
    folder = _hub_snapshot(str(checkpoint), ["*.json"])
    return folder, read_hub_tensor_index(str(checkpoint))


# ---------------------------------------------------------------------- headers
def read_safetensors_header(path: Path) -> dict[str, StoredTensor]:
    """Parse one safetensors file's header (8-byte little-endian length + JSON) and check that the
    file is long enough for every tensor it declares."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(
                    f"truncated safetensors file {path}: {size} bytes, not even an 8-byte header length — re-download it"
                )
            header_len = int.from_bytes(head, "little")
            if header_len > MAX_HEADER_BYTES:
                raise CheckpointError(
                    f"{path} is not a safetensors file: header length {header_len} bytes is implausible"
                )
            if 8 + header_len > size:
                raise CheckpointError(
                    f"truncated safetensors file {path}: {size} bytes, but its header alone needs {8 + header_len} — re-download it"
                )
            raw = f.read(header_len)
    except FileNotFoundError:
        raise CheckpointError(f"safetensors file not found: {path}") from None
    try:
        header = parse_json(raw.decode("utf-8"), str(path), "safetensors header", CheckpointError)
    except (CheckpointError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not a safetensors file: its header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise CheckpointError(
            f"{path} is not a safetensors file: header is {type(header).__name__}, expected an object"
        )

    tensors: dict[str, StoredTensor] = {}
    spans: list[tuple[int, int, str]] = []
    data_end = 0
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = (
                entry["dtype"],
                tuple(int(d) for d in entry["shape"]),
                entry["data_offsets"],
            )
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: malformed header entry for tensor {key!r}: {entry!r}") from None
        if dtype not in DTYPE_BYTES:
            raise CheckpointError(
                f"{path}: tensor {key!r} has unknown dtype {dtype!r} — expected one of {sorted(DTYPE_BYTES)}"
            )
        nbytes = math.prod(shape) * DTYPE_BYTES[dtype]
        if not (isinstance(begin, int) and isinstance(end, int)) or begin < 0 or end - begin != nbytes:
            raise CheckpointError(
                f"{path}: tensor {key!r} {dtype} {list(shape)} needs {nbytes} bytes, header gives offsets {[begin, end]}"
            )
        tensors[key] = StoredTensor(dtype, shape, path.name, nbytes)
        spans.append((begin, end, key))
        data_end = max(data_end, end)
    _check_no_overlap(spans, path)
    needed = 8 + header_len + data_end
    if size < needed:
        raise CheckpointError(
            f"truncated safetensors file {path}: {size} bytes, its header needs {needed} — re-download it"
        )
    return tensors


def _check_no_overlap(spans: list[tuple[int, int, str]], path: Path) -> None:
    """Two tensors sharing bytes means a crafted or corrupt header: refuse it, naming both."""
    spans = sorted(s for s in spans if s[1] > s[0])
    for (b0, e0, k0), (b1, e1, k1) in zip(spans, spans[1:], strict=False):
        if b1 < e0:
            raise CheckpointError(
                f"{path}: tensors {k0!r} {[b0, e0]} and {k1!r} {[b1, e1]} overlap in the data region — "
                "the header is corrupt or crafted; re-download the checkpoint"
            )


def shard_path(folder: Path, name: object, index_path: Path) -> Path:
    """The shard a weight_map entry names, confined to the checkpoint folder: a plain file name (no
    folders, no '..', no absolute path) that is not a symlink leading out of the folder. Nothing outside
    is ever opened, so no byte of another file can end up in a message."""
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", "..") or "\x00" in name:
        raise CheckpointError(
            f"{index_path} names shard {str(name)[:80]!r}, which is not a plain file name in the checkpoint folder — "
            "the index is corrupt or crafted; re-download it"
        )
    path = folder / name
    if path.is_symlink() and not path.resolve().is_relative_to(folder.resolve()):
        raise CheckpointError(f"{index_path} names shard {name!r}, a symlink leading outside {folder} — refusing it")
    return path


def read_tensor_index(folder: str | Path) -> dict[str, StoredTensor]:
    """Every tensor of a checkpoint folder, from the safetensors headers only (sharded or single)."""
    folder = Path(folder)
    index_path = folder / INDEX_FILE
    if index_path.is_file():
        index = read_json(index_path, "safetensors index", CheckpointError)
        try:
            weight_map = index["weight_map"]
        except (KeyError, TypeError):
            raise CheckpointError(
                f"{index_path} has no 'weight_map' object — expected the Hugging Face sharded layout"
            ) from None
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{index_path}: 'weight_map' is empty or not an object")
        result: dict[str, StoredTensor] = {}
        names = set()
        for value in weight_map.values():
            shard_path(folder, value, index_path)
            names.add(value)
        for file_name in sorted(names):
            shard = folder / file_name
            if not shard.is_file():
                raise CheckpointError(
                    f"{index_path} lists shard {file_name!r}, which is missing from {folder}"
                )
            listed = {k for k, v in weight_map.items() if v == file_name}
            header = read_safetensors_header(shard)
            absent = sorted(listed - header.keys())
            if absent:
                raise CheckpointError(
                    f"{shard}: {len(absent)} tensors listed in {INDEX_FILE} are not in this shard ({_names(absent)})"
                )
            extra = sorted(header.keys() - listed)
            if extra:
                raise CheckpointError(
                    f"{shard}: holds {len(extra)} tensors that {INDEX_FILE} does not list ({_names(extra)})"
                )
            result.update(header)
        return result
    single = folder / SINGLE_FILE
    if single.is_file():
        return read_safetensors_header(shard_path(folder, SINGLE_FILE, single))
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder not found: {folder}")
    raise CheckpointError(
        f"{folder} has neither {INDEX_FILE} nor {SINGLE_FILE} — expected a GR00T checkpoint folder"
    )


@dataclass
class LayoutCheck:
    """Result of comparing a checkpoint's tensors with the model of its config."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    misshaped: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(
        default_factory=list
    )  # key, expected, found
    skipped: list[str] = field(default_factory=list)  # known-unused tensors present (not loaded)
    wrong_dtype: list[tuple[str, str]] = field(default_factory=list)  # key, stored dtype (not a float type)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.misshaped or self.wrong_dtype)

    def problems(self) -> str:
        """One line naming the first few offending tensors of each kind, with counts."""
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing ({_names(self.missing)})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected ({_names(self.unexpected)})")
        if self.misshaped:
            shown = ", ".join(f"{k}: expected {list(e)}, got {list(g)}" for k, e, g in self.misshaped[:3])
            more = f", … {len(self.misshaped) - 3} more" if len(self.misshaped) > 3 else ""
            parts.append(f"{len(self.misshaped)} with wrong shape ({shown}{more})")
        if self.wrong_dtype:
            shown = ", ".join(f"{k}: {d}" for k, d in self.wrong_dtype[:3])
            more = f", … {len(self.wrong_dtype) - 3} more" if len(self.wrong_dtype) > 3 else ""
            parts.append(
                f"{len(self.wrong_dtype)} stored as a non-float dtype ({shown}{more}; expected {'/'.join(WEIGHT_DTYPES)})"
            )
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "missing": self.missing,
            "unexpected": self.unexpected,
            "misshaped": [{"key": k, "expected": list(e), "found": list(g)} for k, e, g in self.misshaped],
            "skipped": self.skipped,
            "wrong_dtype": [{"key": k, "dtype": d} for k, d in self.wrong_dtype],
        }


def _names(keys: list[str], limit: int = 3) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", … {len(keys) - limit} more" if len(keys) > limit else "")


# ---------------------------------------------------------------------- layout and loading
@contextlib.contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Create modules with meta-device parameters but real buffers (e.g. rotary frequencies), so a
    model is built without allocating or initialising weights that the checkpoint overwrites."""
    register = nn.Module.register_parameter

    def register_on_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        register(module, name, param)
        if param is not None:
            module._parameters[name] = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    nn.Module.register_parameter = register_on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = register


def load_state_dict(
    folder: Path, index: Mapping[str, StoredTensor], keys: list[str], dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """Read ``keys`` from the folder's safetensors files, cast to ``dtype`` (bf16/fp32/mixed input)."""
    from safetensors import safe_open

    by_file: dict[str, list[str]] = {}
    for key in keys:
        by_file.setdefault(index[key].file, []).append(key)
    tensors: dict[str, torch.Tensor] = {}
    for file_name, file_keys in by_file.items():
        path = folder / file_name
        try:
            with safe_open(str(path), framework="pt") as f:
                for key in file_keys:
                    tensors[key] = f.get_tensor(key).to(dtype)
        except CheckpointError:
            raise
        except Exception as exc:  # safetensors raises its own error types for corrupt files
            raise CheckpointError(f"cannot read tensors from {path}: {exc}") from None
    return tensors


@dataclass
class LazyModel:
    """A model whose parameters stay on the meta device until ``loaded`` reads some of them from
    the checkpoint: what an export uses to hold one graph's weights at a time instead of the whole model."""

    model: nn.Module
    folder: Path
    index: Mapping[str, StoredTensor]
    keys: list[str]  # the model's tensors in the checkpoint (known-unused ones skipped)
    dtype: torch.dtype

    @contextlib.contextmanager
    def loaded(self, keys: list[str]) -> Iterator[nn.Module]:
        """The model with ``keys`` read from the checkpoint (cast to ``dtype``) inside the block, back on meta
        after it: modules built from them meanwhile keep (and free with themselves) their own references."""
        unknown = sorted(set(keys) - set(self.keys))
        if unknown:
            raise CheckpointError(f"no model tensor {unknown[0]!r} in checkpoint {self.folder}")
        state = load_state_dict(self.folder, self.index, keys, self.dtype)
        self.model.load_state_dict(state, strict=False, assign=True)
        del state
        try:
            yield self.model
        finally:
            current = self.model.state_dict(keep_vars=True)
            meta = {k: torch.empty_like(current[k], device="meta") for k in keys}
            self.model.load_state_dict(meta, strict=False, assign=True)
