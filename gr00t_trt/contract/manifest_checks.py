"""Validation of an export's ``manifest.json``: schema, value ranges and file integrity rules.

The manifest is read by the robot side, so nothing in it is trusted: every value is checked for type
and range before a dataclass is built (a ``steps: 0`` would hand out the initial noise as actions, a
``slot: -1`` would silently index the last embodiment row), and every file the runtime opens must be
listed with its sha256 under a plain relative path that stays inside the export folder. Each check
raises one ``ManifestError`` line naming the offending field or file. Stdlib only.
"""

from __future__ import annotations

import math
import posixpath
import re
from pathlib import Path, PurePosixPath
from typing import Any

from ..base.errors import ManifestError
from .onnx_external import external_data_files

#: sanity bounds: far above any GR00T size, far below what would exhaust memory when allocated
MAX_DIM = 1 << 16  # static dims (E 2048, H 50, Ds/Da 128, C 1536, ...)
#: elements of one graph tensor with its dynamic dims at 1: each static dim may be in range while their
#: product is absurd (H = Da = 16384 is 2^28 elements per sample); GR00T's largest is an image, 254,016
MAX_STATIC_ELEMENTS = 1 << 24
MAX_DYNAMIC = 1 << 20  # dynamic dims (B, S, n, T)
MAX_STEPS = 1000  # denoising steps (N1.6 uses 4)
MAX_IMAGE_SIDE = 8192
MAX_EMBODIMENT_ROWS = 1024
PRECISIONS = ("fp32", "fp16", "bf16", "fp8", "int8")
TENSOR_DTYPES = ("float32", "float16", "bfloat16", "int64", "int32", "bool", "uint8", "float8_e4m3fn")
TOKEN_KEYS = ("image_token_index", "image_start_token_id", "image_end_token_id", "pad_token_id")
#: files the runtime reads from an export folder besides the graphs (processor and tokenizer)
RUNTIME_FILES = (
    "processor_config.json", "statistics.json", "embodiment_id.json", "tokenizer.json", "tokenizer_config.json",
    "chat_template.json", "added_tokens.json", "vocab.json", "merges.txt",
)  # fmt: skip
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


# ------------------------------------------------------------------------------------------ primitives
def _fail(source: str, field: str, expected: str, got: Any) -> ManifestError:
    shown = repr(got)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return ManifestError(f"{source}: {field} must be {expected}, got {shown} — re-export with `gr00t-trt export`")


def check_int(value: Any, source: str, field: str, low: int, high: int) -> int:
    """An integer (not a bool, not a float such as 1e9) with ``low ≤ value ≤ high``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(source, field, f"an integer in {low}..{high}", value)
    return value


def check_type(value: Any, kind: type | tuple[type, ...], source: str, field: str, what: str) -> Any:
    if not isinstance(value, kind):
        raise _fail(source, field, what, value)
    return value


def check_relative_path(rel: Any, source: str, field: str) -> str:
    """A plain relative POSIX path below the export folder: not absolute, no ``..``, no backslash."""
    if not isinstance(rel, str) or not rel or "\\" in rel or "\x00" in rel:
        raise _fail(source, field, "a plain relative file name", rel)
    parts = PurePosixPath(rel).parts
    if PurePosixPath(rel).is_absolute() or not parts or any(p in ("..", ".") for p in parts) or rel.startswith("~"):
        raise ManifestError(
            f"{source}: {field} {rel!r} is not a plain relative path inside the export folder "
            "(absolute paths and '..' are refused) — re-export with `gr00t-trt export`"
        )
    return rel


# ------------------------------------------------------------------------------------------ schema
def validate_manifest_data(data: Any, source: str) -> None:
    """Check the whole manifest dict against the schema; raise one ManifestError line on the first problem."""
    check_type(data, dict, source, "the manifest", "a JSON object")
    required = ("source", "model", "dims", "dynamic_dims", "steps", "image_sizes", "embodiments", "graphs",
                "files", "tokens", "pixels_per_token", "exporter")  # fmt: skip
    missing = [k for k in required if k not in data]
    if missing:
        raise ManifestError(f"{source}: missing required key(s) {', '.join(missing)} — re-export with `gr00t-trt export`")
    for key in ("source", "model", "exporter"):
        check_type(data[key], dict, source, key, "an object")
    _check_dims(data["dims"], source)
    _check_dynamic_dims(data["dynamic_dims"], source)
    check_int(data["steps"], source, "steps", 1, MAX_STEPS)
    check_int(data["pixels_per_token"], source, "pixels_per_token", 1, MAX_DYNAMIC)
    _check_image_sizes(data["image_sizes"], source)
    _check_tokens(data["tokens"], source)
    _check_files(data["files"], source)
    _check_graphs(data["graphs"], source)
    _check_tensor_sizes(data["graphs"], data["dims"], source)
    _check_embodiments(data["embodiments"], data["model"], source)
    vision = check_type(data.get("vision", {}), dict, source, "vision", "an object")
    if "position_table" in vision:
        check_relative_path(vision["position_table"], source, "vision.position_table")


def _check_dims(dims: Any, source: str) -> None:
    check_type(dims, dict, source, "dims", "an object of name -> size")
    for name, size in dims.items():
        check_int(size, source, f"dims.{name}", 1, MAX_DIM)


def _check_dynamic_dims(dynamic: Any, source: str) -> None:
    check_type(dynamic, dict, source, "dynamic_dims", "an object of name -> [min, opt, max]")
    for name, bounds in dynamic.items():
        field = f"dynamic_dims.{name}"
        if not isinstance(bounds, list) or len(bounds) != 3:
            raise _fail(source, field, "[min, opt, max]", bounds)
        low, opt, high = (check_int(v, source, field, 1, MAX_DYNAMIC) for v in bounds)
        if not low <= opt <= high:
            raise _fail(source, field, "[min, opt, max] with min ≤ opt ≤ max", bounds)


def _check_image_sizes(sizes: Any, source: str) -> None:
    check_type(sizes, list, source, "image_sizes", "a list of [h, w]")
    for i, size in enumerate(sizes):
        if not isinstance(size, list) or len(size) != 2:
            raise _fail(source, f"image_sizes[{i}]", "[h, w]", size)
        for v in size:
            check_int(v, source, f"image_sizes[{i}]", 1, MAX_IMAGE_SIDE)


def _check_tokens(tokens: Any, source: str) -> None:
    check_type(tokens, dict, source, "tokens", "an object of token name -> id")
    for key in TOKEN_KEYS:
        if key not in tokens:
            raise ManifestError(f"{source}: tokens.{key} is missing — re-export with `gr00t-trt export`")
    for key, value in tokens.items():
        check_int(value, source, f"tokens.{key}", 0, 1 << 31)


def _check_files(files: Any, source: str) -> None:
    check_type(files, dict, source, "files", "an object of relative path -> sha256")
    for rel, digest in files.items():
        check_relative_path(rel, source, "files key")
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise _fail(source, f"files[{rel!r}]", "a sha256 of 64 lower-case hex digits", digest)


def _check_tensor(t: Any, source: str, field: str) -> None:
    check_type(t, dict, source, field, "an object with name, dtype, dims")
    check_type(t.get("name"), str, source, f"{field}.name", "a string")
    if t.get("dtype") not in TENSOR_DTYPES:
        raise _fail(source, f"{field}.dtype", f"one of {', '.join(TENSOR_DTYPES)}", t.get("dtype"))
    dims = check_type(t.get("dims"), list, source, f"{field}.dims", "a list of dim names or sizes")
    for d in dims:
        if not isinstance(d, str):
            check_int(d, source, f"{field}.dims", 1, MAX_DYNAMIC)


def _check_graphs(graphs: Any, source: str) -> None:
    check_type(graphs, dict, source, "graphs", "an object of graph name -> graph")
    if not graphs:
        raise ManifestError(f"{source}: graphs is empty — re-export with `gr00t-trt export`")
    for name, g in graphs.items():
        field = f"graphs.{name}"
        check_type(g, dict, source, field, "an object")
        if g.get("name") != name:
            raise _fail(source, f"{field}.name", repr(name), g.get("name"))
        check_type(g.get("kind"), str, source, f"{field}.kind", "a string")
        check_relative_path(g.get("file"), source, f"{field}.file")
        if g.get("precision") not in PRECISIONS:
            raise _fail(source, f"{field}.precision", f"one of {', '.join(PRECISIONS)}", g.get("precision"))
        for side in ("inputs", "outputs"):
            tensors = check_type(g.get(side), list, source, f"{field}.{side}", "a list of tensors")
            for i, t in enumerate(tensors):
                _check_tensor(t, source, f"{field}.{side}[{i}]")
        gdims = check_type(g.get("dims", {}), dict, source, f"{field}.dims", "an object of name -> size")
        for key, size in gdims.items():
            check_int(size, source, f"{field}.dims.{key}", 1, MAX_DYNAMIC)


def _check_tensor_sizes(graphs: dict, dims: dict, source: str) -> None:
    """Refuse a tensor whose static dims multiply past MAX_STATIC_ELEMENTS (buffers are allocated from
    these before any graph could disagree)."""
    for name, g in graphs.items():
        sizes = {**dims, **g.get("dims", {})}
        for side in ("inputs", "outputs"):
            for i, t in enumerate(g[side]):
                static = [d if isinstance(d, int) else sizes[d] for d in t["dims"] if isinstance(d, int) or d in sizes]
                if math.prod(static) > MAX_STATIC_ELEMENTS:
                    raise _fail(source, f"graphs.{name}.{side}[{i}] ({t['name']}, dims {t['dims']})",
                                f"at most {MAX_STATIC_ELEMENTS:,} elements per sample", math.prod(static))


def embodiment_rows(embodiments: dict, model: dict, source: str) -> int:
    """Rows of the graphs' embodiment-specific weights: 1 for a single-embodiment (sliced) export, else
    the model's ``max_num_embodiments``."""
    if len(embodiments) == 1:
        return 1
    if "max_num_embodiments" not in model:
        raise ManifestError(
            f"{source}: model.max_num_embodiments is missing, needed to check the embodiment slots — "
            "re-export with `gr00t-trt export`"
        )
    return check_int(model["max_num_embodiments"], source, "model.max_num_embodiments", 1, MAX_EMBODIMENT_ROWS)


def _check_embodiments(embodiments: Any, model: dict, source: str) -> None:
    check_type(embodiments, dict, source, "embodiments", "an object of tag -> {tag, id, slot}")
    if not embodiments:
        raise ManifestError(f"{source}: embodiments is empty — re-export with `gr00t-trt export`")
    rows = embodiment_rows(embodiments, model, source)
    used: dict[int, str] = {}
    for tag, e in embodiments.items():
        field = f"embodiments.{tag}"
        check_type(e, dict, source, field, "an object with tag, id, slot")
        if set(e) != {"tag", "id", "slot"} or e["tag"] != tag:
            raise _fail(source, field, f"{{'tag': {tag!r}, 'id': ..., 'slot': ...}}", e)
        check_int(e["id"], source, f"{field}.id", 0, MAX_EMBODIMENT_ROWS - 1)
        slot = check_int(e["slot"], source, f"{field}.slot", 0, MAX_EMBODIMENT_ROWS - 1)
        if slot >= rows:
            raise ManifestError(
                f"{source}: {field}.slot {slot} is outside the graphs' {rows} embodiment row(s) (0..{rows - 1}) — "
                "re-export with `gr00t-trt export`"
            )
        if slot in used:
            raise ManifestError(f"{source}: embodiments {used[slot]!r} and {tag!r} share slot {slot}")
        used[slot] = tag


# ------------------------------------------------------------------------------------------ integrity
def external_files(folder: Path, rel: str) -> list[str]:
    """The external-data files the graph ``rel`` names, as paths relative to the export folder (whatever
    their names: ONNX Runtime and TensorRT open any ``location`` a tensor gives)."""
    graph = folder / rel
    if not graph.is_file():
        return []  # a missing graph is verify_manifest_files' to report
    found = []
    for location in sorted(external_data_files(graph)):
        joined = posixpath.normpath(posixpath.join(posixpath.dirname(rel), location.replace("\\", "/")))
        if posixpath.isabs(location) or joined == ".." or joined.startswith("../"):
            raise ManifestError(f"{graph} reads external data from {location!r}, outside the export folder — "
                                "refusing it; re-export with `gr00t-trt export`")
        found.append(joined)
    return found


def runtime_files(folder: Path, graph_files: list[str]) -> list[str]:
    """Every file the runtime will open: each graph, every external-data file it names, its ``.data``
    weights when present, and the processor and tokenizer files present in the folder."""
    wanted: list[str] = []
    for rel in graph_files:
        wanted.append(rel)
        if (folder / f"{rel}.data").exists() or (folder / f"{rel}.data").is_symlink():
            wanted.append(f"{rel}.data")
        wanted.extend(f for f in external_files(folder, rel) if f not in wanted)
    wanted.extend(name for name in RUNTIME_FILES if (folder / name).exists() or (folder / name).is_symlink())
    return wanted


def check_integrity(folder: Path, graph_files: list[str], files: dict[str, str]) -> None:
    """Refuse an export unless every runtime file is listed with its sha256 and every listed path stays
    inside the folder after resolving symlinks."""
    folder = Path(folder)
    for rel in runtime_files(folder, graph_files):
        if rel not in files:
            raise ManifestError(
                f"{folder / rel} is used by the runtime but not listed with its sha256 in the manifest's files — "
                "re-export with `gr00t-trt export`"
            )
    root = folder.resolve()
    for rel in files:
        path = folder / rel
        if (path.exists() or path.is_symlink()) and not path.resolve().is_relative_to(root):
            raise ManifestError(
                f"{path} resolves outside the export folder (symlink to {path.resolve()}) — refusing it; "
                "copy the real file into the export or re-export"
            )
