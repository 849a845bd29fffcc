"""The robot-facing policy: observation dict in, action dict (physical units) out.

A tiny openpi-style interface — ``Policy.load(folder)``, ``get_action(obs)``, ``reset()``, ``metadata`` —
over the Preprocessor (observation → model inputs, actions → physical units) and the Pipeline (graphs on a
backend). It reads only the export directory.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendError, EmbodimentError
from ..manifest import Manifest, load_manifest
from .backend import Backend
from .pipeline import STAGES, Pipeline

BACKENDS = ("auto", "ort", "trt")


def trt_usable() -> bool:
    """True when the TensorRT backend exists in this version, ``tensorrt`` is importable and a CUDA GPU
    answers (probed through cuda-python, never by creating a TensorRT builder: that can abort)."""
    if importlib.util.find_spec("gr00t_trt.runtime.trt_backend") is None or importlib.util.find_spec("tensorrt") is None:
        return False
    try:
        from cuda.bindings import runtime as cudart

        err, count = cudart.cudaGetDeviceCount()
        return int(err) == 0 and count > 0
    except Exception:
        return False


def make_backend(backend: str | Backend) -> Backend:
    """A Backend from its name ("auto" picks trt when usable, else ort), or the given instance."""
    if isinstance(backend, Backend):
        return backend
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r} — expected one of: {', '.join(BACKENDS)}")
    if backend == "auto":
        backend = "trt" if trt_usable() else "ort"
    if backend == "trt":
        raise BackendError(
            "the TensorRT backend is not available in this version of gr00t-trt (no engines can be built or "
            "loaded yet) — use backend='ort'"
        )
    from .ort_backend import OrtBackend

    return OrtBackend()


class Policy:
    """Validates, preprocesses, runs the graphs and decodes actions. Use ``Policy.load(folder)``."""

    def __init__(self, folder: Path, manifest: Manifest, pipeline: Pipeline, preprocessor: Any) -> None:
        self.folder, self.manifest, self.pipeline, self.preprocessor = Path(folder), manifest, pipeline, preprocessor
        self.last_timings: dict[str, float] = dict.fromkeys(("preprocess", *STAGES, "pipeline", "decode", "total"), 0.0)

    @classmethod
    def load(cls, folder: str | Path, backend: str | Backend = "auto", *, bucket: int = 32,
             verify_files: bool = True) -> Policy:
        """Open an export directory (checking every file's sha256 unless ``verify_files=False``)."""
        folder = Path(folder)
        manifest = load_manifest(folder, verify_files=verify_files)
        chosen = make_backend(backend)
        from ..processing.preprocess import Preprocessor

        preprocessor = Preprocessor.from_dir(
            folder,
            max_state_dim=manifest.dims["Ds"],
            image_token_index=manifest.tokens["image_token_index"],
            pixels_per_token=manifest.pixels_per_token,
        )
        return cls(folder, manifest, Pipeline(manifest, folder, chosen, bucket=bucket), preprocessor)

    # ----------------------------------------------------------------- the interface
    def get_action(self, obs: dict, *, embodiment: str | None = None, noise: np.ndarray | None = None,
                   seed: int | None = None) -> dict[str, np.ndarray]:
        """Actions in physical units for one observation (Isaac-GR00T ``get_action`` format).

        noise: initial noise float32 [B, H, Da] (parity tests); else drawn from ``default_rng(seed)``.
        """
        start = time.perf_counter()
        tag = self.resolve_embodiment(embodiment)
        inputs = self.preprocessor(obs, tag)
        prepared = time.perf_counter()
        if noise is None:
            shape = (inputs.input_ids.shape[0], self.manifest.dims["H"], self.manifest.dims["Da"])
            noise = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
        action_pred = self.pipeline.run(inputs, noise)
        ran = time.perf_counter()
        actions = self.preprocessor.decode(action_pred.copy(), inputs)  # the pipeline reuses its buffer
        done = time.perf_counter()
        timings = self.last_timings
        timings["preprocess"] = (prepared - start) * 1e3
        for stage in STAGES:
            timings[stage] = self.pipeline.last_timings[stage]
        timings["pipeline"] = (ran - prepared) * 1e3
        timings["decode"] = (done - ran) * 1e3
        timings["total"] = (done - start) * 1e3
        return actions

    def resolve_embodiment(self, embodiment: str | None) -> str:
        """The tag to use: the given one if exported, else the only exported one."""
        tags = sorted(self.manifest.embodiments)
        if embodiment is None:
            if len(tags) == 1:
                return tags[0]
            raise EmbodimentError(f"this export has {len(tags)} embodiments — choose one (embodiment= / --embodiment) of: {', '.join(tags)}")
        self.manifest.embodiment(embodiment)  # raises with the list of exported tags
        return embodiment

    def reset(self) -> None:
        """Forget per-episode state (timings, the preprocessor's caches); the policy itself is stateless."""
        for key in self.last_timings:
            self.last_timings[key] = 0.0
        reset = getattr(self.preprocessor, "reset", None)
        if callable(reset):
            reset()

    @property
    def metadata(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "embodiments": sorted(m.embodiments),
            "image_sizes": [list(size) for size in m.image_sizes],
            "action_horizon": m.dims["H"],
            "action_dim": m.dims["Da"],
            "state_dim": m.dims["Ds"],
            "steps": m.steps,
            "backend": self.pipeline.backend.name,
            "source": m.source,
        }

    def close(self) -> None:
        self.pipeline.close()

    def __enter__(self) -> Policy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
