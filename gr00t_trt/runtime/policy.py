"""The robot-facing policy: observation dict in, action dict (physical units) out.

A tiny openpi-style interface — ``Policy.load(folder)``, ``get_action(obs)``, ``reset()``, ``metadata`` —
over the Preprocessor (observation → model inputs, actions → physical units) and the Pipeline (graphs on a
backend). It reads only the export directory.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..base.errors import BackendError, EmbodimentError, ObservationError
from ..contract.manifest import Manifest, load_manifest
from .backend import Backend
from .pipeline import Pipeline
from .registry import backend_names, make_backend

#: kept for callers of earlier versions: the names ``Policy.load(backend=...)`` accepts
BACKENDS = backend_names()


class Policy:
    """Validates, preprocesses, runs the graphs and decodes actions. Use ``Policy.load(folder)``.

    Concurrency: ``get_action`` may be called from several threads (a policy server does); calls are
    serialised by one lock around preprocess → graphs → decode, because the pipeline's buffers are shared
    by every call. ``last_timings`` is the last finished call's. For parallel throughput load one
    ``Policy`` per thread (each owns its buffers; the lock costs well under a microsecond uncontended).
    """

    def __init__(self, folder: Path, manifest: Manifest, pipeline: Pipeline, preprocessor: Any) -> None:
        self.folder, self.manifest, self.pipeline, self.preprocessor = Path(folder), manifest, pipeline, preprocessor
        self.last_timings: dict[str, float] = {}
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def load(cls, folder: str | Path, backend: str | Backend = "auto", *, bucket: int = 32,
             verify_files: bool = True, detailed_timings: bool = False, **backend_options: Any) -> Policy:
        """Open an export directory (checking every file's sha256 unless ``verify_files=False``).

        backend: "auto" (TensorRT when engines for this GPU and TensorRT version exist, else ONNX Runtime),
        "ort", "trt" or a Backend instance; ``backend_options`` go to the backend (ORT: ``threads``,
        ``device``; TensorRT: ``engine_dir``, ``device_id``, ``cuda_graphs``)."""
        folder = Path(folder)
        manifest = load_manifest(folder, verify_files=verify_files)
        chosen = make_backend(backend, folder, manifest, **backend_options)
        # the family's processor: longer prompts and larger batches than the export's are refused up front
        preprocessor = manifest.model_family.runtime().make_preprocessor(folder, manifest)
        pipeline = Pipeline(manifest, folder, chosen, bucket=bucket, detailed_timings=detailed_timings)
        return cls(folder, manifest, pipeline, preprocessor)

    # ----------------------------------------------------------------- the interface
    def get_action(self, obs: dict, *, embodiment: str | None = None, noise: np.ndarray | None = None,
                   seed: int | None = None) -> dict[str, np.ndarray]:
        """Actions in physical units for one observation (Isaac-GR00T ``get_action`` format).

        noise: initial noise float32 [B, H, Da] (parity tests); else drawn from ``default_rng(seed)``, with
        seed a non-negative int or None (fresh entropy). Thread-safe (see the class docstring).
        """
        _check_seed(seed)
        with self._lock:
            if self._closed:  # the backend's own message would name its activate(), which a Policy user never calls
                raise BackendError(f"this Policy of {self.folder} was closed (close() or the end of its `with` "
                                   "block) — load it again with Policy.load(folder) to keep calling get_action")
            start = time.perf_counter()
            tag = self.resolve_embodiment(embodiment)
            inputs = self.preprocessor(obs, tag)
            prepared = time.perf_counter()
            if noise is None:
                shape = (inputs.input_ids.shape[0], self.manifest.dims["H"], self.manifest.dims["Da"])
                noise = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
            elif isinstance(noise, np.ndarray) and noise.dtype == np.dtype(np.float32).newbyteorder():
                noise = noise.astype(np.float32)  # big-endian float32 (as state is accepted): same values
            action_pred = self.pipeline.run(inputs, noise)
            ran = time.perf_counter()
            actions = self.preprocessor.decode(action_pred.copy(), inputs)  # the pipeline reuses its buffer
            done = time.perf_counter()
            timings = {"preprocess": (prepared - start) * 1e3}
            timings.update((k, v) for k, v in self.pipeline.last_timings.items() if k != "total")
            timings["pipeline"] = (ran - prepared) * 1e3
            timings["decode"] = (done - ran) * 1e3
            timings["total"] = (done - start) * 1e3
            self.last_timings = timings
            return actions

    def resolve_embodiment(self, embodiment: str | None) -> str:
        """The tag to use: the given one if exported, else the only exported one."""
        tags = sorted(self.manifest.embodiments)
        if embodiment is not None and not isinstance(embodiment, str):
            raise EmbodimentError(f"embodiment must be a tag (str) — one of: {', '.join(tags)}; got {type(embodiment).__name__}")
        if embodiment is None:
            if len(tags) == 1:
                return tags[0]
            raise EmbodimentError(f"this export has {len(tags)} embodiments — choose one (embodiment= / --embodiment) of: {', '.join(tags)}")
        self.manifest.embodiment(embodiment)  # raises with the list of exported tags
        return embodiment

    def reset(self) -> None:
        """Forget per-episode state (timings, the preprocessor's caches); the policy itself is stateless."""
        with self._lock:
            self.last_timings = {}
        reset = getattr(self.preprocessor, "reset", None)
        if callable(reset):
            reset()

    @property
    def metadata(self) -> dict[str, Any]:
        """What the export serves. ``per_embodiment`` is what a caller gets back: each embodiment's action
        horizon and action keys with their widths (``get_action`` answers ``{key: [B, horizon, width]}``);
        the ``model_*`` sizes are the padded tensors inside the graphs, never seen by a caller."""
        m = self.manifest
        per_embodiment = {}
        for tag in sorted(m.embodiments):
            spec = self.preprocessor.spec.embodiment(tag)
            per_embodiment[tag] = {"action_horizon": spec.action_horizon, "actions": dict(spec.action_dims),
                                   "cameras": list(spec.video_keys), "state": dict(spec.state_dims)}
        return {
            "embodiments": sorted(m.embodiments),
            "per_embodiment": per_embodiment,
            "image_sizes": [list(size) for size in m.image_sizes],
            "model_action_horizon": m.dims["H"],
            "model_action_dim": m.dims["Da"],
            "model_state_dim": m.dims["Ds"],
            "steps": m.steps,
            "backend": self.pipeline.backend.name,
            "source": m.source,
        }

    def close(self) -> None:
        """Free the backend's sessions and buffers; a closed policy refuses further calls."""
        with self._lock:
            self._closed = True
            self.pipeline.close()

    def __enter__(self) -> Policy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_seed(seed: object) -> None:
    if seed is None:
        return
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ObservationError(f"seed must be a non-negative integer or None, got {seed!r}")
