"""Export a checkpoint into an export directory (architecture §3): graphs, manifest, processor files.

The directory is assembled under a hidden temporary name next to the target and renamed into place only
when every graph has been exported, checked and validated against PyTorch, so an interrupted export never
leaves a directory that looks complete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import __version__
from ..errors import EmbodimentError, ExportError
from ..graphs import vision_graph_name
from ..manifest import EmbodimentEntry, GraphEntry, Manifest, sha256_file, write_manifest
from .examples import ExampleStep, example_step
from .precision import PRECISIONS as PRECISIONS
from .precision import ExportPrecision, check_precision_options

#: camera frames whose processed sizes are exported by default: one 4:3 and one 1:1 camera
DEFAULT_CAMERA_FRAMES = ((480, 640), (256, 256))
COPIED_FILES = ("processor_config.json", "statistics.json", "embodiment_id.json")

Progress = Callable[[str, str], None]  # (graph name, status) -> None


@dataclass(frozen=True)
class ExportOptions:
    embodiments: tuple[str, ...] = ()  # empty: every embodiment the checkpoint has
    image_sizes: tuple[tuple[int, int], ...] = ()  # empty: DEFAULT_CAMERA_FRAMES after preprocessing
    steps: int | None = None  # None: config.num_inference_timesteps
    precision: str = "fp32"  # every graph, or "fp8": the §5 defaults (vision and small graphs fp16)
    graph_precision: str = ""  # per-graph overrides, e.g. "vision=fp16,dit=fp8"
    device: str | None = None  # device class whose §5 defaults to use: thor | rtx | hopper | orin
    calib: str | None = None  # folder of recorded observations (.npz) to calibrate fp8 graphs on
    calib_count: int = 4  # synthetic calibration observations per embodiment when calib is None
    max_batch: int = 1
    max_seq_len: int = 512
    tokenizer: str | None = None
    force: bool = False


def export_checkpoint(
    checkpoint: str | Path, out_dir: str | Path, options: ExportOptions = ExportOptions(), progress: Progress | None = None
) -> Manifest:
    """Export every graph of ``checkpoint`` into ``out_dir``; returns the written manifest."""
    from ..model.checkpoint import load_model
    from ..processing.modality import load_processor_spec
    from ..processing.tokenizer import resolve_tokenizer, save_tokenizer

    progress = progress or (lambda name, status: None)
    out_dir = Path(out_dir)
    _check_options(options, out_dir)

    progress("checkpoint", "loading")
    model, config, folder = load_model(checkpoint, dtype=torch.float32)
    if options.steps is not None and options.steps != config.num_inference_timesteps:
        config = dataclasses.replace(config, num_inference_timesteps=options.steps)
        model.action_head.config = config
    processor = load_processor_spec(folder)
    embodiments = _select_embodiments(processor, options.embodiments)
    slots = [embodiments[tag].id for tag in embodiments] if len(embodiments) == 1 else None
    image_sizes = options.image_sizes or _default_image_sizes(processor)
    tokenizer = resolve_tokenizer(
        folder, options.tokenizer, config.backbone.image_token_index, config.backbone.text.vocab_size
    )

    # --- precision (issue 8): the plan and, for fp8 graphs, the calibration observations ---------------
    precision = ExportPrecision.prepare(options, config, processor, tokenizer, embodiments, slots, image_sizes)
    if precision.calibration is not None:
        progress("calibration", precision.calibration.describe())
    # ------------------------------------------------------------------------------------------------------

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.partial-"))
    try:
        graphs = _export_graphs(model, config, image_sizes, slots, options, work, progress, precision)
        progress("processor files", "copying")
        for name in COPIED_FILES:
            if (folder / name).is_file():
                shutil.copyfile(folder / name, work / name)
        save_tokenizer(tokenizer, work)
        manifest = Manifest(
            source={"checkpoint": str(checkpoint), "folder": str(folder), "fingerprint": fingerprint(folder)},
            model=config.to_dict(),
            dims=_static_dims(config),
            dynamic_dims=_dynamic_ranges(config, image_sizes, options),
            steps=config.num_inference_timesteps,
            image_sizes=tuple(image_sizes),
            embodiments={
                tag: EmbodimentEntry(tag=tag, id=spec.id, slot=(0 if slots else spec.id))
                for tag, spec in embodiments.items()
            },
            graphs=graphs,
            files={p.name: sha256_file(p) for p in sorted(work.iterdir()) if p.is_file()},
            tokens={
                "image_token_index": config.backbone.image_token_index,
                "image_start_token_id": config.backbone.image_start_token_id,
                "image_end_token_id": config.backbone.image_end_token_id,
                "pad_token_id": int(tokenizer.pad_token_id),
            },
            pixels_per_token=config.patch_tokens_per_image_pixel,
            exporter=_versions(),
            precision=precision.manifest_section(),  # precision (issue 8)
        )
        write_manifest(work, manifest)
        _move_into_place(work, out_dir, options.force)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    progress("export", "done")
    return manifest


# ------------------------------------------------------------------------------------------ graphs
def _export_graphs(
    model, config, image_sizes, slots, options, work: Path, progress: Progress, precision: ExportPrecision
) -> dict[str, GraphEntry]:
    from .action_head_graphs import action_head_graph_modules
    from .backbone import BackboneGraph
    from .vision import VisionGraph

    modules: dict[str, tuple[str, torch.nn.Module, dict[str, int]]] = {}
    for h, w in image_sizes:
        vision = VisionGraph(model.backbone, h, w)
        tokens = (h * w) // config.patch_tokens_per_image_pixel
        modules[vision_graph_name(h, w)] = ("vision", vision, {"h": h, "w": w, "t": tokens})
    modules["backbone"] = ("backbone", BackboneGraph(model.backbone), {})
    for kind, module in action_head_graph_modules(model.action_head, slots).items():
        modules[kind] = (kind, module, {})

    # fp32 modules give the validation targets; the exported modules run in the export precision
    example: ExampleStep = example_step(config, modules, image_sizes, slots)
    # --- precision (issue 8): fp8 graphs' calibration feeds from the fp32 modules, before any cast -------
    precision.calibrate(modules, progress)
    graphs: dict[str, GraphEntry] = {}
    for name, (kind, module, dims) in modules.items():
        progress(name, f"exporting ({precision.plan.of(kind)})")
        started = time.perf_counter()
        # --- precision (issue 8): cast/wrap at the planned precision (in place: validation targets were
        # computed in fp32 above), export, quantise fp8 graphs, validate on ORT CPU (bf16: PyTorch)
        graphs[name] = precision.export_graph(name, kind, module, dims, example, work)
        progress(name, f"done in {time.perf_counter() - started:.1f}s")
    return graphs


# ------------------------------------------------------------------------------------------ options
def _check_options(options: ExportOptions, out_dir: Path) -> None:
    check_precision_options(options)  # plan, --calib, --calib-count: one-line errors (issue 8)
    if options.steps is not None and options.steps < 1:
        raise ExportError(f"--steps must be ≥ 1, got {options.steps}")
    if options.max_batch < 1:
        raise ExportError(f"--max-batch must be ≥ 1, got {options.max_batch}")
    for h, w in options.image_sizes:
        if h % 28 or w % 28 or h <= 0 or w <= 0:
            raise ExportError(
                f"image size {h}x{w} is not a positive multiple of 28 — the processor resizes every camera "
                "frame to multiples of 28 (e.g. 252x336 for 4:3 cameras)"
            )
    if out_dir.exists() and not options.force:
        raise ExportError(f"{out_dir} already exists — pass --force to replace it")


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


def _default_image_sizes(processor) -> tuple[tuple[int, int], ...]:
    from ..processing.images import processed_image_size

    sizes = [processed_image_size(h, w, processor) for h, w in DEFAULT_CAMERA_FRAMES]
    return tuple(dict.fromkeys(sizes))


def _static_dims(config) -> dict[str, int]:
    return {
        "E": config.backbone_embedding_dim,
        "H": config.action_horizon,
        "Ds": config.max_state_dim,
        "Da": config.max_action_dim,
        "C": config.input_embedding_dim,
        "L": config.dit.num_layers // 2,
        "Hc": config.dit.num_attention_heads,
        "Dh": config.dit.attention_head_dim,
        "O": config.hidden_size,
    }


def _dynamic_ranges(config, image_sizes, options: ExportOptions) -> dict[str, list[int]]:
    """[min, opt, max] of each dynamic dim: what TensorRT profiles and the runtime's buffers plan for."""
    tokens = [(h * w) // config.patch_tokens_per_image_pixel for h, w in image_sizes]
    max_images = 4 * options.max_batch
    return {
        "B": [1, 1, options.max_batch],
        "S": [1, min(256, options.max_seq_len), options.max_seq_len],
        "n": [1, 1, max_images],
        "T": [min(tokens), max(tokens), max_images * max(tokens)],
    }


def fingerprint(folder: Path) -> str:
    """sha256 over config.json and the safetensors headers' index: identifies the source weights cheaply."""
    digest = hashlib.sha256()
    for name in ("config.json", "model.safetensors.index.json"):
        if (folder / name).is_file():
            digest.update((folder / name).read_bytes())
    for shard in sorted(folder.glob("*.safetensors")):
        digest.update(shard.name.encode())
        digest.update(str(shard.stat().st_size).encode())
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


def _move_into_place(work: Path, out_dir: Path, force: bool) -> None:
    if out_dir.exists():
        if not force:
            raise ExportError(f"{out_dir} appeared while exporting — pass --force to replace it")
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
        os.replace(work, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(work, out_dir)
