"""Export a checkpoint into an export directory (architecture §3): graphs, manifest, processor files.

The directory is assembled under a hidden temporary name next to the target and renamed into place only
when every graph has been exported, checked and validated against PyTorch, so an interrupted export never
leaves a directory that looks complete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import __version__
from ..base.artifacts import StagingFolder, check_replaceable
from ..base.errors import EmbodimentError, ExportError
from ..base.files import write_atomic
from ..contract.graphs import dynamic_ranges
from ..contract.manifest import (
    EmbodimentEntry,
    GraphEntry,
    Manifest,
    is_export,
    sha256_file,
    write_manifest,
)
from ..processing.position_grid import TABLE_FILE, table_bytes
from .examples import ExampleStep
from .graph_modules import release_memory
from .precision import PRECISIONS as PRECISIONS
from .precision import ExportPrecision, check_precision_options

#: camera frames whose processed sizes the default export names (the first is the engines' opt size):
#: 4:3, 1:1, 16:9, 21:9 and their portrait twins — the one vision graph serves every size between them
LANDSCAPE_FRAMES = ((480, 640), (256, 256), (720, 1280), (1080, 2520))
DEFAULT_CAMERA_FRAMES = LANDSCAPE_FRAMES + tuple((w, h) for h, w in LANDSCAPE_FRAMES if h != w)
COPIED_FILES = ("processor_config.json", "statistics.json", "embodiment_id.json")

Progress = Callable[[str, str], None]  # (graph name, status) -> None


@dataclass(frozen=True)
class ExportOptions:
    embodiments: tuple[str, ...] = ()  # empty: every embodiment the checkpoint has
    #: sizes the export must serve besides the defaults (the first: the engines' opt size); the vision
    #: graph serves every size whose token rows and columns lie within those of all of them
    image_sizes: tuple[tuple[int, int], ...] = ()
    steps: int | None = None  # None: config.num_inference_timesteps
    precision: str = "fp32"  # every graph, or "fp8": the §5 defaults (vision and small graphs fp16)
    graph_precision: str = ""  # per-graph overrides, e.g. "vision=fp16,dit=fp8"
    device: str | None = None  # a bench.devices key whose precision defaults to use (thor, orin, rtx5090, ...)
    calib: str | None = None  # folder of recorded observations (.npz) to calibrate fp8 graphs on
    calib_count: int = 4  # synthetic calibration observations per embodiment when calib is None
    max_batch: int = 4
    max_seq_len: int = 512
    tokenizer: str | None = None
    force: bool = False


def export_checkpoint(
    checkpoint: str | Path, out_dir: str | Path, options: ExportOptions = ExportOptions(), progress: Progress | None = None
) -> Manifest:
    """Export every graph of ``checkpoint`` into ``out_dir``; returns the written manifest. The model
    family (config.json's ``model_type``) decides the graphs, their wrappers and the host processing."""
    from ..families.registry import family_of_checkpoint
    from ..model.checkpoint import resolve_checkpoint

    progress = progress or (lambda name, status: None)
    out_dir = Path(out_dir)
    check_options(options, out_dir)

    progress("checkpoint", "opening")
    family = family_of_checkpoint(resolve_checkpoint(checkpoint))
    face = family.export()
    # weights stay on the meta device: each dataflow piece reads its graphs' weights when it is exported
    model, config, folder = face.open_model(checkpoint, dtype=torch.float32)
    if options.steps is not None and options.steps != config.num_inference_timesteps:
        config = dataclasses.replace(config, num_inference_timesteps=options.steps)
        model.model.action_head.config = config
    static = face.static_dims(config)
    _check_image_sizes(options.image_sizes, static["R"])
    processor = face.processor_spec(folder)
    embodiments = _select_embodiments(processor, options.embodiments)
    slots = [embodiments[tag].id for tag in embodiments] if len(embodiments) == 1 else None
    image_sizes = tuple(dict.fromkeys((*options.image_sizes, *(
        face.processed_image_size(h, w, processor) for h, w in DEFAULT_CAMERA_FRAMES))))
    tokenizer = face.resolve_tokenizer(folder, options.tokenizer, config)

    # the precision plan and, for fp8 graphs, the calibration observations
    plans = {"fp8": face.FP8_PLAN, "int8": face.INT8_PLAN}
    unplanned = [f"{kind} at {value}" for kind, value in check_precision_options(options).graphs.items()
                 if value in plans and kind not in plans[value]]
    if unplanned:
        raise ExportError(f"{family.title} has no quantisation plan for {', '.join(unplanned)} yet — export those "
                          "graphs at fp16 or bf16 (--precision fp16, or --graph-precision GRAPH=fp16)")
    contract = family.runtime().CONTRACT
    precision = ExportPrecision.prepare(
        options, config, processor, embodiments, slots, image_sizes, contract=contract, static=static,
        preprocessor=lambda: face.host_processor(processor, tokenizer, config))
    precision.plans = {"fp8": (face.FP8_PLAN, face.FP8_KEEP), "int8": (face.INT8_PLAN, face.INT8_KEEP)}
    if precision.calibration is not None:
        progress("calibration", precision.calibration.describe())

    staging = StagingFolder(out_dir, progress)  # also removes stale partial folders of killed exports
    work = staging.path
    try:
        graphs = _export_graphs(face, model, config, image_sizes, slots, work, progress, precision)
        progress("processor files", "copying")
        for name in COPIED_FILES:
            if (folder / name).is_file():
                shutil.copyfile(folder / name, work / name)
        face.save_tokenizer(tokenizer, work)
        manifest = write_export_manifest(
            work, config, graphs, family=family, tokenizer=tokenizer,
            source={"checkpoint": str(checkpoint), "folder": str(folder), "fingerprint": fingerprint(folder)},
            embodiments={tag: EmbodimentEntry(tag=tag, id=spec.id, slot=(0 if slots else spec.id))
                         for tag, spec in embodiments.items()},
            image_sizes=tuple(image_sizes), max_batch=options.max_batch, max_seq_len=options.max_seq_len, precision=precision.manifest_section(),
        )
        _move_into_place(staging, options.force)
    except BaseException:
        staging.discard()
        raise
    progress("export", "done")
    return manifest


# ------------------------------------------------------------------------------------------ graphs
def _export_graphs(face, model, config, image_sizes, slots, work: Path, progress: Progress,
                   precision: ExportPrecision) -> dict[str, GraphEntry]:
    """``model``: the checkpoint's ``LazyModel``; each piece's weights are read when it is built."""

    def build(kinds: list[str]) -> dict:
        return face.segment_modules(model, config, kinds, slots)

    return export_graphs(build, config, image_sizes, slots, precision, work, progress,
                         example=face.example_step(config, slots))


def export_graphs(build: Callable[[list[str]], dict], config, image_sizes, slots, precision: ExportPrecision,
                  work: Path, progress: Progress, *, example: ExampleStep, start: str = "vision") -> dict[str, GraphEntry]:
    """Export, check and validate every graph from ``start`` into ``work`` at its planned precision, one
    ``dataflow.segments`` piece at a time, so that only that piece's weights are in memory:

    ``build(kinds)`` gives the piece's fp32 wrappers (graph name → (kind, module, dims)); they run the
    example control step (inputs and fp32 validation targets) and, for fp8 graphs, the calibration
    observations' control steps (whose activations are kept for the next pieces), then each is cast in
    place, exported, quantised and validated, and freed. ``start``: dit_context for the action head
    alone (``example`` then starts from example backbone features)."""
    pieces = precision.contract.segments(start)
    graphs: dict[str, GraphEntry] = {}
    for i, piece in enumerate(pieces):
        kinds = [stage.kind for stage in piece]
        stop = pieces[i + 1][0].kind if i + 1 < len(pieces) else None
        modules = build(kinds)
        if "vision" in modules:  # the learned position table the host resamples per image size
            write_atomic(work / TABLE_FILE, table_bytes(modules["vision"][1].table_grid()))
        example.run(modules, kinds[0], stop)
        precision.calibrate(modules, kinds[0], stop, {s.kind for p in pieces[i + 1:] for s in p}, progress)
        for name in list(modules):  # names only: a list of the items would keep every module alive
            progress(name, f"exporting ({precision.plan.of(modules[name][0])})")
            started = time.perf_counter()
            # cast/wrap at the planned precision (in place: the validation targets were computed in fp32
            # above), export, quantise fp8 graphs, validate on ORT CPU (bf16: PyTorch); the module leaves
            # ``modules`` so that its weights are freed once they are no longer needed
            graphs[name] = precision.export_graph(name, modules, example, work)
            progress(name, f"done in {time.perf_counter() - started:.1f}s; {peak_rss_text()}")
        del modules
        release_memory()  # bf16 graphs' wrappers (reference cycles) before the next piece's weights
    return graphs


def peak_rss_text() -> str:
    """The export's peak RSS so far, and its quantiser children's largest (the memory bound of issue 20 is
    on both)."""
    from ..bench.machine import peak_rss_bytes
    from .quantize import children_peak_rss

    child = children_peak_rss()
    text = f"peak RSS {peak_rss_bytes() / 2**30:.2f} GiB"
    return text + (f" (quantiser child {child / 2**30:.2f} GiB)" if child else "")


# ------------------------------------------------------------------------------------------ options
def check_options(options: ExportOptions, out_dir: Path) -> None:
    """One-line errors for bad options or an output folder that must not be replaced — before any work."""
    check_precision_options(options)  # plan, --calib, --calib-count
    if options.steps is not None and options.steps < 1:
        raise ExportError(f"--steps must be ≥ 1, got {options.steps}")
    if options.max_batch < 1:
        raise ExportError(f"--max-batch must be ≥ 1, got {options.max_batch}")
    for h, w in options.image_sizes:
        if h <= 0 or w <= 0:
            raise ExportError(f"image size {h}x{w} — expected positive sizes, e.g. 252x336")
    check_replaceable(out_dir, options.force, is_export, "gr00t-trt export", ExportError)


def _check_image_sizes(sizes, side: int) -> None:
    """Named image sizes must be multiples of the model's pixels per token (28 for N1.6's processor)."""
    for h, w in sizes:
        if h % side or w % side:
            raise ExportError(
                f"image size {h}x{w} is not a positive multiple of {side} — the processor resizes every camera frame "
                f"to multiples of {side} (e.g. {9 * side}x{12 * side} for 4:3 cameras)"
            )


def _select_embodiments(processor, requested: tuple[str, ...]) -> dict:
    available = processor.embodiments
    if not requested:
        return dict(available)
    unknown = [tag for tag in requested if tag not in available]
    if unknown:
        raise EmbodimentError(
            f"embodiment {unknown[0]!r} is not in the checkpoint — it has: {', '.join(sorted(available))}"
        )
    return {tag: available[tag] for tag in dict.fromkeys(requested)}


def write_export_manifest(work: Path, config, graphs: dict[str, GraphEntry], *, family, tokenizer, source: dict,
                          embodiments: dict, image_sizes: tuple, max_batch: int, max_seq_len: int,
                          precision: dict | None = None) -> Manifest:
    """The manifest of a finished export folder (every file in it hashed), written into it."""
    face = family.export()
    dims = face.static_dims(config)
    grids = [(h // dims["R"], w // dims["R"]) for h, w in image_sizes]
    manifest = Manifest(
        source=source,
        model=config.to_dict(),
        dims=dims,
        dynamic_dims=dynamic_ranges(max_batch=max_batch, max_seq_len=max_seq_len, token_grids=grids),
        steps=config.num_inference_timesteps,
        image_sizes=tuple(image_sizes),
        embodiments=embodiments,
        graphs=graphs,
        files={p.name: sha256_file(p) for p in sorted(work.iterdir()) if p.is_file()},
        tokens=face.manifest_tokens(config, tokenizer),
        pixels_per_token=dims["R"] ** 2,  # pixels per image token (28² for N1.6, 32² for N1.7)
        exporter=_versions(),
        precision=precision or {},
        vision=face.vision_declaration(config) if any(g.kind == "vision" for g in graphs.values()) else {},
        family=family.name,
    )
    write_manifest(work, manifest)
    return manifest


#: weight bytes sampled per shard by ``fingerprint``: blocks x block size (64 KB however big the shard)
_SAMPLE_BLOCKS, _SAMPLE_BYTES = 16, 4096


def fingerprint(folder: str | Path) -> str:
    """Identity of a checkpoint's weights, cheap enough to recompute before every ``verify``.

    sha256 over config.json, the shard index, every safetensors file's header (names, dtypes, shapes,
    offsets) and size, and 16 blocks of 4 KB spread over each file's data region. Headers alone cannot
    tell apart two checkpoints of the same config (fine-tunes, other seeds have identical headers),
    so a fixed 64 KB sample of weights per shard is hashed too: milliseconds even for the 3B checkpoint.
    """
    from ..model.checkpoint import CONFIG_FILE, INDEX_FILE, MAX_HEADER_BYTES

    folder = Path(folder)
    digest = hashlib.sha256(b"gr00t-trt fingerprint v2\0")
    for name in (CONFIG_FILE, INDEX_FILE):
        path = folder / name
        digest.update(name.encode() + b"\0")
        digest.update(path.read_bytes() if path.is_file() else b"<absent>")
    for shard in sorted(folder.glob("*.safetensors")):
        size = shard.stat().st_size
        digest.update(shard.name.encode() + b"\0" + str(size).encode() + b"\0")
        with shard.open("rb") as f:
            head = f.read(8)
            length = min(int.from_bytes(head, "little"), MAX_HEADER_BYTES) if len(head) == 8 else 0
            digest.update(head + f.read(length))
            start = 8 + length
            span = max(size - start - _SAMPLE_BYTES, 0)
            for k in range(_SAMPLE_BLOCKS):
                f.seek(start + span * k // max(_SAMPLE_BLOCKS - 1, 1))
                digest.update(f.read(_SAMPLE_BYTES))
    return digest.hexdigest()


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import transformers

    return {
        "gr00t_trt": __version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "transformers": transformers.__version__,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _move_into_place(staging: StagingFolder, force: bool) -> None:
    """Publish the finished export (normal permissions, atomic rename, only over an old export)."""
    staging.publish(force, is_export, "gr00t-trt export", ExportError)


class _DropTorchvisionSkips(logging.Filter):
    """torch.onnx's registry logs "torchvision is not installed. Skipping torchvision::<op>" ~30 times per
    export; GR00T uses no torchvision op, so these lines are noise to the user."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("torchvision is not installed. Skipping")


def _quiet_torchvision_skips() -> None:
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    if not any(isinstance(f, _DropTorchvisionSkips) for f in logger.filters):
        logger.addFilter(_DropTorchvisionSkips())


_quiet_torchvision_skips()
