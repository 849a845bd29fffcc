"""The export directory's contract: ``manifest.json``.

Everything the runtime needs to know about an export lives here: which graphs exist, their I/O with
concrete dtypes and dimension ranges, the model values used (horizon, dims, steps), embodiments and
their slots, image sizes, and the sha256 of every file so a damaged export is refused. Stdlib + numpy
only: the robot side reads it without PyTorch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..base.errors import EmbodimentError, Gr00tTrtError, ManifestError
from ..base.files import read_json, write_json
from ..families.family import ModelFamily
from ..families.registry import DEFAULT_FAMILY, family_named, family_of_manifest
from .dataflow import Contract
from .graphs import TensorSpec, find_tensor
from .manifest_checks import check_integrity, validate_manifest_data

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "gr00t-trt-export"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class GraphEntry:
    """One exported graph."""

    name: str  # file stem, e.g. "vision_252x336", "dit"
    kind: str  # a key of gr00t_trt.contract.graphs.GRAPH_SPECS
    file: str  # "<name>.onnx" (its weights in "<name>.onnx.data")
    precision: str  # fp32 | fp16 | bf16 | fp8
    inputs: tuple[TensorSpec, ...]  # concrete numpy dtype names: float32, float16, int64, bool, uint8
    outputs: tuple[TensorSpec, ...]
    #: sizes of dims fixed for this graph only (vision: h, w, t)
    dims: dict[str, int] = field(default_factory=dict)

    def tensor(self, name: str) -> TensorSpec:
        try:
            return find_tensor(self.name, (*self.inputs, *self.outputs), name)
        except KeyError as exc:
            raise ManifestError(f"{exc.args[0]} (in the manifest)") from None


@dataclass(frozen=True)
class EmbodimentEntry:
    tag: str
    id: int  # the checkpoint's embodiment id (embodiment_id.json)
    slot: int  # the row the graphs index (== id unless the export was sliced to some embodiments)


@dataclass(frozen=True)
class Manifest:
    """The parsed manifest.json of an export directory."""

    source: dict[str, Any]  # checkpoint id/path, fingerprint
    model: dict[str, Any]  # config values used (Gr00tConfig.to_dict())
    dims: dict[str, int]  # static dim sizes shared by graphs: E, H, Ds, Da, C, L, Hc, Dh, O
    #: dynamic dims: name -> [min, opt, max] (B, S, T, n)
    dynamic_dims: dict[str, list[int]]
    steps: int
    image_sizes: tuple[tuple[int, int], ...]
    embodiments: dict[str, EmbodimentEntry]
    graphs: dict[str, GraphEntry]
    files: dict[str, str]  # relative file name -> sha256
    tokens: dict[str, int]  # image_token_index, image_start_token_id, image_end_token_id, pad_token_id
    pixels_per_token: int
    exporter: dict[str, str]
    #: precision plan (per-graph precisions, device class, activation_dtype of the float tensors between
    #: graphs) and, for fp8 graphs, the calibration set (source, size, fingerprint); empty in old exports
    precision: dict[str, Any] = field(default_factory=dict)
    #: the vision graph's declaration (export.driver.vision_declaration): its per-size grid input and
    #: the position table file the host resamples; empty in exports with one vision graph per size
    vision: dict[str, Any] = field(default_factory=dict)
    #: the model family (``families.registry``): which graph declarations, dataflow and host processing
    #: the export follows; manifests written before families existed are N1.6's
    family: str = DEFAULT_FAMILY.name
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION

    # --------------------------------------------------------------- queries
    @property
    def model_family(self) -> ModelFamily:
        return family_named(self.family)

    @property
    def contract(self) -> Contract:
        """The family's export contract: graph declarations, dims and control step."""
        return self.model_family.runtime().CONTRACT

    def graph(self, name: str) -> GraphEntry:
        if name not in self.graphs:
            raise ManifestError(
                f"the export has no graph {name!r} — it has: {', '.join(sorted(self.graphs))}"
            )
        return self.graphs[name]

    def graphs_of_kind(self, kind: str) -> list[GraphEntry]:
        return [g for g in self.graphs.values() if g.kind == kind]

    def sizes(self, entry: GraphEntry) -> dict[str, int]:
        """Every static dim size a graph's tensors can name: the export's and the graph's own."""
        return {**self.dims, **entry.dims}

    def embodiment(self, tag: str) -> EmbodimentEntry:
        if tag not in self.embodiments:
            raise EmbodimentError(
                f"embodiment {tag!r} was not exported — this export has: {', '.join(sorted(self.embodiments))}"
                " (re-export with --embodiment TAG to add it)"
            )
        return self.embodiments[tag]

    # --------------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict[str, Any]:
        """JSON-native (lists, not tuples): exactly what ``manifest.json`` holds and ``from_dict`` reads."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = MANIFEST_NAME) -> Manifest:
        if not isinstance(data, dict):
            raise ManifestError(f"{source} is not a gr00t-trt export manifest (a JSON {type(data).__name__}, expected an object)")
        if data.get("format") != FORMAT_NAME:
            raise ManifestError(f"{source} is not a gr00t-trt export manifest (format {data.get('format')!r})")
        if data.get("format_version") != FORMAT_VERSION:
            raise ManifestError(
                f"{source} has format version {data.get('format_version')}, this gr00t-trt reads "
                f"{FORMAT_VERSION} — re-export with this version"
            )
        validate_manifest_data(data, source)
        try:
            graphs = {
                name: GraphEntry(
                    name=g["name"],
                    kind=g["kind"],
                    file=g["file"],
                    precision=g["precision"],
                    inputs=tuple(TensorSpec(t["name"], t["dtype"], tuple(t["dims"])) for t in g["inputs"]),
                    outputs=tuple(TensorSpec(t["name"], t["dtype"], tuple(t["dims"])) for t in g["outputs"]),
                    dims=dict(g.get("dims", {})),
                )
                for name, g in data["graphs"].items()
            }
            return cls(
                source=dict(data["source"]),
                model=dict(data["model"]),
                dims={k: int(v) for k, v in data["dims"].items()},
                dynamic_dims={k: [int(x) for x in v] for k, v in data["dynamic_dims"].items()},
                steps=int(data["steps"]),
                image_sizes=tuple((int(h), int(w)) for h, w in data["image_sizes"]),
                embodiments={tag: EmbodimentEntry(**e) for tag, e in data["embodiments"].items()},
                graphs=graphs,
                files=dict(data["files"]),
                tokens={k: int(v) for k, v in data["tokens"].items()},
                pixels_per_token=int(data["pixels_per_token"]),
                exporter=dict(data["exporter"]),
                precision=dict(data.get("precision", {})),
                vision=dict(data.get("vision", {})),
                family=family_of_manifest(data, source).name,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"{source} is malformed: {type(exc).__name__} {exc}") from None


def is_export(folder: Path) -> bool:
    """True when ``folder`` holds a gr00t-trt export manifest (what ``--force`` may replace, what ``inspect``
    reads as an export rather than a checkpoint)."""
    try:
        return read_json(Path(folder) / MANIFEST_NAME, "export manifest", expect=dict).get("format") == FORMAT_NAME
    except Gr00tTrtError:
        return False


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path, manifest: Manifest) -> Path:
    return write_json(Path(folder) / MANIFEST_NAME, manifest.to_dict())


def load_manifest(folder: str | Path, *, verify_files: bool = True) -> Manifest:
    """Read an export directory's manifest; by default check that every listed file is intact."""
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    if not folder.is_dir():
        raise ManifestError(f"export directory not found: {folder} — run `gr00t-trt export` first")
    if not path.is_file():
        raise ManifestError(f"{folder} has no {MANIFEST_NAME} — it is not a complete gr00t-trt export")
    data = read_json(path, "export manifest", ManifestError)
    manifest = Manifest.from_dict(data, source=str(path))
    check_integrity(folder, [g.file for g in manifest.graphs.values()], manifest.files)
    if verify_files:
        verify_manifest_files(folder, manifest)
    return manifest


def verify_manifest_files(folder: Path, manifest: Manifest) -> None:
    """Refuse an export whose files are missing or differ from what was exported."""
    for rel, expected in manifest.files.items():
        file = Path(folder) / rel
        if not file.is_file():
            raise ManifestError(f"{file} is listed in the manifest but missing — re-run `gr00t-trt export`")
        actual = sha256_file(file)
        if actual != expected:
            raise ManifestError(
                f"{file} does not match the manifest (sha256 {actual[:12]}…, expected {expected[:12]}…) — "
                "the file was modified or truncated; re-run `gr00t-trt export`"
            )
