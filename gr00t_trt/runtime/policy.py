"""The robot-facing policy: observation dict in, action dict (physical units) out.

A tiny interface — ``Policy.load(folder)``, ``get_action(obs, options) -> (action, info)`` as Isaac-GR00T's
policies and ``PolicyClient`` answer, ``predict(obs)`` for the chunk alone, ``validate``, ``modality_config``,
``reset()``, ``metadata`` —
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
from .prefix import PREFIX, PREFIX_OPTIONS, check_prefix_options, plan_prefix
from .registry import backend_names, make_backend

#: kept for callers of earlier versions: the names ``Policy.load(backend=...)`` accepts
BACKENDS = backend_names()
#: what ``get_action``'s ``options`` may hold (a server request's ``options`` likewise); the prefix options
#: are real-time chunking's (``runtime/prefix.py``, Isaac-GR00T's ``rtc_*`` names)
OPTION_KEYS = ("embodiment", "noise", "seed", *PREFIX_OPTIONS)


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
    def get_action(self, obs: dict, options: dict[str, Any] | None = None, *, embodiment: str | None = None,
                   noise: np.ndarray | None = None, seed: int | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """``(action, info)`` for one observation: Isaac-GR00T's call, and ``PolicyClient.get_action``'s.

        ``options`` may hold ``embodiment``, ``seed`` and ``noise`` (as a server request's do; the keyword
        arguments win over it). ``info``: ``timings_ms`` of this call, the ``embodiment``, the ``seed``, how
        the ``noise`` was made, the ``backend`` and the ``export``'s identity (source checkpoint,
        fingerprint, format); option keys it does not know are listed in ``ignored_options``.

        Prefix conditioning (real-time chunking): ``options["prefix"]`` holds the actions the new chunk must
        continue, ``{key: float [B, n, width]}`` in physical units exactly as this method returns them
        (usually the executing chunk's unexecuted tail), with Isaac-GR00T's ``rtc_overlap_steps`` (rows
        seeded from the prefix's last rows, default n), ``rtc_frozen_steps`` (rows kept exactly, default 0),
        ``rtc_ramp_rate`` and ``action_horizon`` (see ``runtime/prefix.py``); ``info["prefix"]`` echoes the
        plan. Without a prefix the result is bit-identical to the plain sampler's.
        """
        if options is not None and not isinstance(options, dict):
            raise ObservationError(f"options must be a dict (embodiment, seed, noise) or None, got {type(options).__name__}")
        options = dict(options or {})
        embodiment = options.get("embodiment") if embodiment is None else embodiment
        noise = options.get("noise") if noise is None else noise
        seed = options.get("seed") if seed is None else seed
        prefix = options if check_prefix_options(options) else None
        actions, timings, tag, plan = self._run(obs, embodiment, noise, seed, prefix)
        info: dict[str, Any] = {
            "timings_ms": timings,
            "embodiment": tag,
            "seed": seed,
            "noise": "given" if noise is not None else "seeded" if seed is not None else "random",
            "backend": self.pipeline.backend.name,
            "export": export_identity(self.manifest),
        }
        if plan is not None:
            info["prefix"] = {"overlap": plan.overlap, "frozen": plan.frozen, "ramp_rate": plan.ramp_rate}
        ignored = sorted(str(k) for k in options if k not in OPTION_KEYS)
        if ignored:
            info["ignored_options"] = ignored
        return actions, info

    def predict(self, obs: dict, *, embodiment: str | None = None, noise: np.ndarray | None = None,
                seed: int | None = None) -> dict[str, np.ndarray]:
        """The action chunk alone, ``{key: float32 [B, horizon, width]}`` in physical units (what
        ``get_action`` returned before it answered ``(action, info)``); timings in ``last_timings``.

        noise: initial noise float32 [B, H, Da] (parity tests); else drawn from ``default_rng(seed)``, with
        seed a non-negative int or None (fresh entropy). Thread-safe (see the class docstring).
        """
        return self._run(obs, embodiment, noise, seed)[0]

    def _run(self, obs: dict, embodiment: str | None, noise: np.ndarray | None, seed: int | None,
             prefix: dict[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict[str, float], str, Any]:
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
            plan = None
            if prefix is None:
                action_pred = self.pipeline.run(inputs, noise)
            else:
                noise, weights, plan = self._condition(inputs, tag, noise, prefix)
                action_pred = self.pipeline.run(inputs, noise, step_weight=weights)
            ran = time.perf_counter()
            actions = self.preprocessor.decode(action_pred.copy(), inputs)  # the pipeline reuses its buffer
            done = time.perf_counter()
            timings = {"preprocess": (prepared - start) * 1e3}
            timings.update((k, v) for k, v in self.pipeline.last_timings.items() if k != "total")
            timings["pipeline"] = (ran - prepared) * 1e3
            timings["decode"] = (done - ran) * 1e3
            timings["total"] = (done - start) * 1e3
            self.last_timings = timings
            return actions, dict(timings), tag, plan

    def _condition(self, inputs: Any, tag: str, noise: np.ndarray, options: dict[str, Any]):
        """(seeded initial actions, step weights [B, H], the plan) for a prefix (``runtime/prefix.py``)."""
        from ..processing.actions import check_prefix, encode_actions

        batch, horizon = inputs.embodiment_id.shape[0], self.manifest.dims["H"]
        # the noise's shape and that the export takes step weights (else: re-export), before any work
        self.pipeline.check(inputs, noise, step_weight=np.ones((batch, horizon), np.float32))
        spec = self.preprocessor.spec.embodiment(tag)
        given = check_prefix(options[PREFIX], spec, batch, flat=inputs.flat)
        plan = plan_prefix(options, next(iter(given.values())).shape[1], spec.action_horizon)
        # encoded where they will be decoded: the chosen rows become rows 0 … overlap−1 (per-row statistics)
        normalised = encode_actions({k: v[:, plan.start:plan.stop] for k, v in given.items()}, spec, inputs.raw_state)
        return plan.seed(noise, normalised), plan.weights(batch, horizon), plan

    def validate(self, obs: dict, embodiment: str | None = None) -> str:
        """Check an observation as ``get_action`` would (keys, dtypes, shapes, batch, prompt length, image
        sizes the export accepts) without running any graph; raises the same one-line error. Returns the
        embodiment tag it was checked against."""
        with self._lock:  # the preprocessor's prompt cache is shared with get_action
            tag = self.resolve_embodiment(embodiment)
            inputs = self.preprocessor(obs, tag)
            noise = np.zeros((inputs.input_ids.shape[0], self.manifest.dims["H"], self.manifest.dims["Da"]), np.float32)
            self.pipeline.check(inputs, noise)  # the graphs' limits: batch, sequence, image sizes
        return tag

    def modality_config(self, embodiment: str | None = None) -> dict[str, Any]:
        """What the policy expects, as Isaac-GR00T's ``get_modality_config`` answers it: one ``ModalityConfig``
        per modality (video, state, action, language) of the embodiment — the same as a server sends."""
        from ..serve.modality import modality_configs

        return modality_configs(self.preprocessor.spec.embodiment(self.resolve_embodiment(embodiment)))

    get_modality_config = modality_config  # Isaac-GR00T's name

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

    def reset(self, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Forget per-episode state (timings, the preprocessor's caches). The policy holds no chunk queue or
        prefix: a ``ChunkRunner`` over it does, and its ``reset()`` clears them and calls this one.
        ``options`` is accepted for Isaac-GR00T's signature; the answer is ``{}`` as its server's."""
        with self._lock:
            self.last_timings = {}
        reset = getattr(self.preprocessor, "reset", None)
        if callable(reset):
            reset()
        return {}

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


def export_identity(manifest: Manifest, paths: bool = True) -> dict[str, Any]:
    """What identifies the served model: source checkpoint and its fingerprint, export format, exporter.
    ``paths=False`` names a local checkpoint by its folder name only (a server without a token answers
    ``ping`` to anyone, who has no business learning the host's directory layout)."""
    source = manifest.source
    checkpoint = source.get("checkpoint")
    if not paths and isinstance(checkpoint, str) and checkpoint.startswith(("/", "~", ".")):
        checkpoint = Path(checkpoint).name
    return {
        "checkpoint": checkpoint,
        "fingerprint": source.get("fingerprint"),
        "format": manifest.format,
        "format_version": manifest.format_version,
        "exporter": dict(manifest.exporter),
        "steps": manifest.steps,
        "precision": sorted({g.precision for g in manifest.graphs.values()}),
    }


def _check_seed(seed: object) -> None:
    if seed is None:
        return
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ObservationError(f"seed must be a non-negative integer or None, got {seed!r}")
