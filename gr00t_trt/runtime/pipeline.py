"""Chains the exported graphs of one control step over preallocated, backend-owned buffers.

The chain itself is the export's family contract (``manifest.contract``: graph declarations and control
step); this module turns it, once per shape bucket, into buffers, bindings and programs: write the host
inputs → vision (one call of the one vision graph per image size, with that size's tables, computed once
and kept) → each vision output's rows assembled in LLM order → backbone → dit_context → the action unit (state encoder + N × (action encoder →
DiT → action decoder)), recorded as one program a backend may capture → download the actions → one
synchronisation. Values flow between graphs in the dtype both sides declare; nothing converts on the way.

``run(..., start="dit_context")`` runs a sub-chain (the action head alone from given backbone features).
``run_graph`` and ``run_stages`` are the slow debugging twins used by ``verify``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..base.errors import EmbodimentError, Gr00tTrtError, ManifestError, ObservationError
from ..contract.dataflow import (
    CARRIED_INPUT,
    CARRY,
    CARRY_OUTPUT,
    CARRY_START,
    GRID,
    OBS,
    STEP,
    STEP_WEIGHT,
    GraphRunner,
    Stage,
    image_groups,
)
from ..contract.graphs import TensorSpec
from ..contract.manifest import GraphEntry, Manifest
from ..contract.served import served_sizes
from .backend import Backend, Buffer, Copy, Program, numpy_dtype
from .buffers import BucketKey, fill_image_index, pad_right, padded_length, row_runs


class ModelInputsLike(Protocol):
    """What ``Pipeline.run`` reads (gr00t_trt.processing.preprocess.ModelInputs fits)."""

    input_ids: np.ndarray  # int64 [B, S]
    attention_mask: np.ndarray  # bool [B, S]
    image_mask: np.ndarray  # bool [B, S]
    images: list[np.ndarray]  # uint8 [h, w, 3], LLM order
    state: np.ndarray  # float [B, 1, Ds]
    embodiment_id: np.ndarray  # int64 [B], the checkpoint's ids (mapped to graph slots here)


class HeadInputs:
    """Inputs of the action-head sub-chain (``run(..., start="dit_context")``); a family whose
    dit_context reads further per-token inputs passes them by name (``extra``)."""

    def __init__(self, backbone_features: np.ndarray, attention_mask: np.ndarray, image_mask: np.ndarray,
                 state: np.ndarray, embodiment_id: np.ndarray, images: tuple = (), **extra: np.ndarray) -> None:
        """backbone_features float [B, S, E], attention_mask / image_mask bool [B, S], state float
        [B, 1, Ds], embodiment_id int64 [B] (checkpoint ids)."""
        self.backbone_features, self.attention_mask, self.image_mask = backbone_features, attention_mask, image_mask
        self.state, self.embodiment_id, self.images, self.extra = state, embodiment_id, images, extra

    def __getattr__(self, name: str):
        extra = self.__dict__.get("extra", {})
        if name in extra:
            return extra[name]
        raise AttributeError(name)


class Pipeline:
    """Runs an export directory's graphs on a backend. Graphs are opened once; buffers and programs are
    made once per shape bucket (LRU of ``max_buckets``) and reused, so a steady state allocates nothing.

    ``detailed_timings`` records the state encoder and each denoising step as programs of their own (so
    ``last_timings`` has them), at the price of capturing N + 1 smaller units instead of one.
    ``run`` returns a buffer that is overwritten by the next call: copy it to keep it. Not thread-safe:
    ``Policy`` serialises calls.
    """

    def __init__(self, manifest: Manifest, folder: str | Path, backend: Backend, *, bucket: int = 32,
                 max_buckets: int = 8, detailed_timings: bool = False) -> None:
        if not isinstance(bucket, int) or bucket < 1:
            raise Gr00tTrtError(f"bucket must be a positive number of tokens, got {bucket!r}")
        if not isinstance(max_buckets, int) or max_buckets < 1:
            raise Gr00tTrtError(f"max_buckets must be a positive integer, got {max_buckets!r}")
        self.manifest, self.folder, self.backend = manifest, Path(folder), backend
        self.bucket, self.max_buckets, self.detailed_timings = bucket, max_buckets, detailed_timings
        _refuse_per_size_vision(manifest)
        self.family = manifest.model_family
        self.contract = manifest.contract
        self.graphs = {s.kind: entry for s in self.contract.control_step
                       for entry in [self._single(s.kind)] if entry is not None}
        #: host inputs with a sequence axis, and which axis it is: padded to the bucket by ``pad_right``
        self.sequence_inputs = _sequence_inputs(self.contract, self.graphs)
        vision = self.graphs.get("vision")
        self.grids = self.family.runtime().make_grids(self.folder, manifest, vision) if vision else None
        self._owns_activation = not backend.is_active
        if self._owns_activation:
            backend.activate()
        try:
            for entry in manifest.graphs.values():
                backend.open(entry, self.folder)
        except BaseException:
            if self._owns_activation:
                backend.deactivate()
            raise
        self._slots = {e.id: e.slot for e in manifest.embodiments.values()}
        self._plans: OrderedDict[BucketKey, _Plan] = OrderedDict()
        self.last_timings: dict[str, float] = {}

    def _single(self, kind: str) -> GraphEntry | None:
        found = self.manifest.graphs_of_kind(kind)
        if len(found) > 1:
            raise ManifestError(f"the export must have at most one {kind!r} graph, it has {len(found)} — re-export")
        return found[0] if found else None

    def _check_chain(self, start: str) -> None:
        missing = [s.kind for s in self.contract.chain(start) if s.kind not in self.graphs]
        if missing:
            raise ManifestError(f"the export has no {', '.join(missing)} graph — it cannot run a control step from "
                                f"{start!r}; re-export all graphs")

    @property
    def dims(self) -> dict[str, int]:
        return self.manifest.dims

    def entry(self, kind: str) -> GraphEntry:
        """The manifest entry of a graph kind."""
        return self.graphs[kind]

    def token_grid(self, height: int, width: int) -> tuple[int, int]:
        """(rows, columns) of the token grid of an h x w image (h, w multiples of dims R)."""
        side = self.dims["R"]
        return height // side, width // side

    def grid_feed(self, name: str, height: int, width: int) -> np.ndarray:
        """The vision graph's per-size input ``name`` for h x w images (``dataflow.GridSource``)."""
        if self.grids is None:
            raise ManifestError(f"the export has no per-image-size input {name!r} — re-export")
        return self.grids(name, *self.token_grid(height, width))

    def close(self) -> None:
        """Free every bucket's buffers (and deactivate the backend if this Pipeline activated it)."""
        for plan in self._plans.values():
            plan.release()
        self._plans.clear()
        if self._owns_activation and self.backend.is_active:
            self.backend.deactivate()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- hot path
    def run(self, inputs: ModelInputsLike | HeadInputs, noise: np.ndarray, *, start: str = "vision",
            step_weight: np.ndarray | None = None) -> np.ndarray:
        """Normalised actions float32 [B, H, Da] from model inputs and initial noise [B, H, Da].

        ``start="dit_context"`` runs the action head alone on ``HeadInputs`` (given backbone features).
        ``step_weight`` float [B, H]: each row's weight in every Euler update (prefix conditioning,
        ``runtime/prefix.py``); None: 1 everywhere, the plain sampler."""
        began = time.perf_counter()
        batch, seq = self.check(inputs, noise, start=start, step_weight=step_weight)
        images = tuple(inputs.images) if start == "vision" else ()
        plan = self._plan(BucketKey(batch, self._padded(seq), tuple(im.shape[:2] for im in images), start))
        plan.fill(inputs, noise, step_weight)
        be = self.backend
        for buf in plan.uploads:
            be.upload(buf)
        marks = [be.mark()]
        for program in plan.programs:
            be.launch(program)
            marks.append(be.mark())
        be.download(plan.result)
        be.synchronize()
        timings = self.last_timings
        timings.clear()
        for i, program in enumerate(plan.programs):
            timings[program.label] = be.elapsed_ms(marks[i], marks[i + 1])
        timings["total"] = (time.perf_counter() - began) * 1e3
        if plan.result.dtype == np.float32:
            return plan.result.host
        np.copyto(plan.action_pred, plan.result.host)
        return plan.action_pred

    @property
    def takes_step_weight(self) -> bool:
        """Whether the export's action decoder weighs each row's update (exports before prefix conditioning
        do not: they run the plain sampler only)."""
        decoder = self.graphs.get("action_decoder")
        return decoder is not None and any(t.name == STEP_WEIGHT for t in decoder.inputs)

    def check(self, inputs: Any, noise: np.ndarray, *, start: str = "vision",
              step_weight: np.ndarray | None = None) -> tuple[int, int]:
        """Validate shapes, dtypes and limits with one-line errors; returns (B, S)."""
        if start not in ("vision", "dit_context"):
            raise Gr00tTrtError(f"a control step runs from 'vision' or 'dit_context', not {start!r}")
        self._check_chain(start)
        if start == "vision":
            ids = inputs.input_ids
            if not isinstance(ids, np.ndarray) or ids.ndim != 2 or ids.dtype.kind not in "iu":
                raise ObservationError(f"input_ids must be an integer array [B, S], got {_describe(ids)}")
            batch, seq = ids.shape
        else:
            features = inputs.backbone_features
            if not isinstance(features, np.ndarray) or features.shape[2:] != (self.dims["E"],) or features.dtype.kind != "f":
                raise ObservationError(f"backbone_features must be float [B, S, {self.dims['E']}], got {_describe(features)}")
            batch, seq = features.shape[:2]
            if not np.isfinite(features).all():
                raise ObservationError("backbone_features contain NaN or inf")
        for name in ("attention_mask", "image_mask"):
            mask = getattr(inputs, name)
            if not isinstance(mask, np.ndarray) or mask.shape != (batch, seq) or mask.dtype != np.bool_:
                raise ObservationError(f"{name} must be bool [{batch}, {seq}], got {_describe(mask)}")
        self._check_sequence_inputs(inputs, start, batch, seq)
        _check_range("batch size B", batch, self.manifest.dynamic_dims.get("B"), "re-export with a larger --max-batch")
        _check_range("sequence length S", seq, self.manifest.dynamic_dims.get("S"), "shorten the instruction or re-export")
        ds, h, da = self.dims["Ds"], self.dims["H"], self.dims["Da"]
        state = inputs.state
        if not isinstance(state, np.ndarray) or state.shape != (batch, 1, ds) or state.dtype.kind != "f":
            raise ObservationError(f"state must be a float array [{batch}, 1, {ds}], got {_describe(state)}")
        if not np.isfinite(state).all():
            raise ObservationError("state contains NaN or inf — expected finite normalised values")
        emb = inputs.embodiment_id
        if not isinstance(emb, np.ndarray) or emb.shape != (batch,) or emb.dtype.kind not in "iu":
            raise ObservationError(f"embodiment_id must be an integer array [{batch}], got {_describe(emb)}")
        if not isinstance(noise, np.ndarray) or noise.shape != (batch, h, da) or noise.dtype != np.float32:
            raise ObservationError(f"noise must be float32 [{batch}, {h}, {da}], got {_describe(noise)}")
        if not np.isfinite(noise).all():
            raise ObservationError("noise contains NaN or inf — expected finite standard-normal samples")
        if step_weight is not None:
            self._check_step_weight(step_weight, batch)
        if start == "vision":
            self._check_images(inputs)
        return batch, seq

    def _check_step_weight(self, weight: Any, batch: int) -> None:
        if not self.takes_step_weight:
            raise ManifestError("this export's action_decoder has no step_weight input (it was made before prefix "
                                "conditioning) — re-export it with `gr00t-trt export` to pass a prefix")
        h = self.dims["H"]
        if not isinstance(weight, np.ndarray) or weight.shape != (batch, h) or weight.dtype.kind != "f":
            raise ObservationError(f"step_weight must be float [{batch}, {h}], got {_describe(weight)}")
        if not np.isfinite(weight).all():
            raise ObservationError("step_weight contains NaN or inf — expected per-row weights in [0, 1]")

    def _check_sequence_inputs(self, inputs: Any, start: str, batch: int, seq: int) -> None:
        """The family's further per-token inputs (e.g. position ids, masks): shape and dtype as declared."""
        known = ("input_ids", "attention_mask", "image_mask", "image_index", "backbone_features")
        for name in self.contract.external_inputs(start):
            if name not in self.sequence_inputs or name in known:
                continue
            tensor = next(self.graphs[s.kind].tensor(name) for s in self.contract.chain(start) if name in s.feeds)
            value = getattr(inputs, name, None)
            shape = tensor.shape({**self.dims, "B": batch, "S": seq})
            kind = "b" if tensor.dtype == "bool" else "iu" if tensor.dtype.startswith(("int", "uint")) else "f"
            if not isinstance(value, np.ndarray) or value.shape != shape or value.dtype.kind not in kind:
                raise ObservationError(f"{name} must be {tensor.dtype} {list(shape)}, got {_describe(value)}")

    def _check_images(self, inputs: ModelInputsLike) -> None:
        tokens, counts = 0, {}
        for i, image in enumerate(inputs.images):
            if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ObservationError(f"image {i} must be uint8 [h, w, 3], got {_describe(image)}")
            size = image.shape[:2]
            if not self.serves(*size):
                raise ObservationError(
                    f"image {i} is {size[0]}x{size[1]} but the export serves {self.served_sizes()} — "
                    f"re-export with --image-size {size[0]}x{size[1]}"
                )
            rows, cols = self.token_grid(*size)
            tokens += rows * cols
            counts[size] = counts.get(size, 0) + 1
        for size, count in counts.items():
            _check_group(size, count, self.manifest.dynamic_dims.get("n"))
        marked = int(np.count_nonzero(inputs.image_mask))
        if marked != tokens:
            raise ObservationError(
                f"the prompt has {marked} image tokens but the {len(inputs.images)} images give {tokens} — "
                "expected one image token per vision embedding row"
            )
        _check_range("image rows T", max(tokens, 1), self.manifest.dynamic_dims.get("T"), "use fewer or smaller images")

    def serves(self, height: int, width: int) -> bool:
        """Whether the vision graph takes h x w images: multiples of R pixels, rows and columns of tokens
        within the export's ranges (r, c)."""
        if "vision" not in self.graphs or "R" not in self.dims:
            return False
        side, dyn = self.dims["R"], self.manifest.dynamic_dims
        rows, cols = self.token_grid(height, width)
        return (height % side == 0 and width % side == 0 and dyn["r"][0] <= rows <= dyn["r"][-1]
                and dyn["c"][0] <= cols <= dyn["c"][-1])

    def served_sizes(self) -> str:
        """The image sizes the export serves, in one phrase (``inspect`` and error messages)."""
        return served_sizes(self.manifest)

    def _padded(self, seq: int) -> int:
        return padded_length(seq, self.bucket, self.manifest.dynamic_dims.get("S"))

    def _plan(self, key: BucketKey) -> _Plan:
        plan = self._plans.get(key)
        if plan is None:
            plan = _Plan(self, key)
            self._plans[key] = plan
            while len(self._plans) > self.max_buckets:
                self._plans.popitem(last=False)[1].release()
        else:
            self._plans.move_to_end(key)
        return plan

    def slots(self, embodiment_id: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The graphs' embodiment slots of checkpoint embodiment ids."""
        out = np.empty(embodiment_id.shape, np.int64) if out is None else out
        for i in range(embodiment_id.shape[0]):
            eid = int(embodiment_id[i])
            if eid not in self._slots:
                raise EmbodimentError(
                    f"embodiment id {eid} was not exported — this export has ids "
                    f"{sorted(self._slots)} ({', '.join(sorted(self.manifest.embodiments))})"
                )
            out[i] = self._slots[eid]
        return out

    # ----------------------------------------------------------------- slow debugging path
    def run_graph(self, name: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one graph alone on host arrays (feeds must match its manifest dtypes); fresh outputs."""
        self.manifest.graph(name)
        return self.backend.run_once(name, feeds)

    def graph_runner(self) -> GraphRunner:
        """A ``GraphRunner`` over ``run_graph`` that first casts each array to the dtype the graph
        declares (so fp32 reference values can feed an fp16 graph) — for the slow paths only."""

        def run(kind: str, name: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            entry = self.manifest.graph(name)
            cast = {t.name: np.ascontiguousarray(feeds[t.name], dtype=numpy_dtype(t.dtype)) for t in entry.inputs}
            return self.run_graph(name, cast)

        return run

    def host_values(self, inputs: Any, noise: np.ndarray, *, start: str = "vision", padded: bool = True,
                    step_weight: np.ndarray | None = None) -> dict[str, Any]:
        """The caller-provided values of a (sub-)chain as the hot path writes them — padded to the bucket
        (unless ``padded=False``), embodiment slots, each in its consumer's dtype — plus ``images`` (a list,
        LLM order) and the noise: what ``evaluate`` takes. Fresh arrays (slow paths only)."""
        batch, seq = self.check(inputs, noise, start=start, step_weight=step_weight)
        sizes = {**self.dims, "B": batch, "S": self._padded(seq) if padded else seq}
        stages = self.contract.chain(start)
        run = {s.kind for s in stages}
        values: dict[str, Any] = {CARRY_START: noise}
        for name in self.contract.external_inputs(start):
            if name == "images":
                values[name] = list(inputs.images)
                continue
            if name == STEP_WEIGHT and not self.takes_step_weight:  # an older export: its graph ignores it
                values[name] = np.ones((batch, self.dims["H"]), np.float32)
                continue
            tensor = next(self.graphs[s.kind].tensor(name) for s in stages
                          if name in s.feeds and (s.feeds[name] == OBS or s.feeds[name] not in run))
            values[name] = np.empty(tensor.shape(sizes), numpy_dtype(tensor.dtype))
            _writer(name, self)(values[name], inputs, noise, _HostWeight(step_weight))
        return values

    def run_stages(self, inputs: ModelInputsLike, noise: np.ndarray) -> dict[str, Any]:
        """Every intermediate result, computed graph by graph on fresh arrays with the hot path's padding:
        image_embeds [T, E] (LLM order), backbone_features [B, S, E] (unpadded), cross_k, cross_v,
        text_bias, image_bias (padded), state_features, actions (list of the N steps' outputs) and
        action_pred (float32, == actions[-1])."""
        seq = inputs.input_ids.shape[1] if isinstance(inputs.input_ids, np.ndarray) and inputs.input_ids.ndim == 2 else 0
        values = self.host_values(inputs, noise)
        backbone = self.graphs["backbone"]

        def no_image_rows(name: str) -> np.ndarray:
            rows = backbone.tensor(name)
            return np.zeros(rows.shape({**self.dims, "T": 1}), numpy_dtype(rows.dtype))

        out = self.contract.evaluate(self.graph_runner(), values, steps=self.manifest.steps,
                                     no_image_rows=no_image_rows, grids=self.grid_feed)
        per_step = out[CARRIED_INPUT]
        out["backbone_features"] = out["backbone_features"][:, :seq]
        out["action_pred"] = per_step[-1].astype(np.float32) if per_step else noise.copy()
        return out


class _Plan:
    """Buffers, bindings and programs of one bucket, wired from the dataflow table."""

    def __init__(self, pipe: Pipeline, key: BucketKey) -> None:
        self.pipe, self.key = pipe, key
        self.values: dict[str, Buffer] = {}  # value name -> the buffer holding it
        self._producers: dict[str, str] = {}  # value name -> who writes it (for error messages)
        self._writers: list[tuple[Callable[..., None], np.ndarray]] = []  # host inputs, filled per call
        self._host_inputs: list[Buffer] = []  # uploaded per call
        self._constants: list[Buffer] = []  # uploaded once
        try:
            self._build()
        except BaseException:
            self.release()  # a half-built bucket must not hold device memory
            raise

    # ----------------------------------------------------------------- building
    def _build(self) -> None:
        pipe, key = self.pipe, self.key
        m, be = pipe.manifest, pipe.backend
        stages = pipe.contract.chain(key.start)
        self._run = {s.kind for s in stages}
        tokens = {size: int(np.prod(pipe.token_grid(*size))) for size in set(key.image_sizes)}
        self.total = sum(tokens[s] for s in key.image_sizes)
        self.sizes = {**m.dims, "B": key.batch, "S": key.seq, "T": max(self.total, 1)}
        programs: dict[str, list] = {}
        for stage in stages:
            if stage.per_image_size:
                self._wire_vision(stage, programs.setdefault(stage.program, []), tokens)
            elif not stage.per_step:
                label = "state_encoder" if pipe.detailed_timings and stage.program == "action_head" else stage.program
                self._wire(stage, pipe.graphs[stage.kind], programs.setdefault(label, []))
        for k in range(m.steps):
            for stage in stages:
                if stage.per_step:
                    label = f"denoise_{k}" if pipe.detailed_timings else stage.program
                    self._wire(stage, pipe.graphs[stage.kind], programs.setdefault(label, []), k)
        self.result = self.values[f"actions_{m.steps}"] if m.steps else self.values["actions_0"]
        self.action_pred = np.empty(self.result.shape, np.float32)
        self.programs: tuple[Program, ...] = tuple(be.record(label, steps) for label, steps in programs.items())
        for buf in self._constants:
            be.upload(buf)
        be.synchronize()
        self.uploads = tuple(self._host_inputs)

    def _wire(self, stage: Stage, entry: GraphEntry, steps: list, k: int | None = None) -> None:
        bound: dict[str, Buffer] = {}
        sizes = {**self.sizes, **entry.dims}
        for tensor in entry.inputs:
            source = stage.feeds[tensor.name]
            if source == STEP:
                bound[tensor.name] = self._step_table(tensor, sizes, k)
            elif source == CARRY:
                bound[tensor.name] = self._consume(f"actions_{k}", tensor, entry, sizes, host=k == 0)
            else:
                host = source == OBS or source not in self._run
                bound[tensor.name] = self._consume(tensor.name, tensor, entry, sizes, host=host)
        for tensor in entry.outputs:
            value = tensor.name
            if (stage.kind, tensor.name) == CARRY_OUTPUT:
                value = f"actions_{k + 1}"
            final = value == f"actions_{self.pipe.manifest.steps}"
            bound[tensor.name] = self._produce(value, tensor, entry, sizes, host=final)
        steps.append(self.pipe.backend.bind(entry.name, bound))

    def _wire_vision(self, stage: Stage, steps: list, tokens: dict[tuple[int, int], int]) -> None:
        """One call of the vision graph per image size (its per-size tables constants of the bucket), then
        the rows of each of its outputs copied into the backbone input of that name ([T, X]) in LLM order."""
        pipe = self.pipe
        backbone, entry = pipe.graphs["backbone"], pipe.graphs[stage.kind]
        self._image_groups = []
        for (h, w), positions in image_groups(self.key.image_sizes).items():
            rows, cols = pipe.token_grid(h, w)
            sizes = {**self.sizes, **entry.dims, "n": len(positions), "r": rows, "c": cols}
            bound: dict[str, Buffer] = {}
            for tensor in entry.inputs:
                value = f"{tensor.name}_{h}x{w}"
                if stage.feeds[tensor.name] == GRID:
                    grid = pipe.grid_feed(tensor.name, h, w)
                    buf = self._new(value, tensor.shape(sizes), numpy_dtype(tensor.dtype), host=True,
                                    producer="the host (once per image size)")
                    np.copyto(buf.host, grid, casting="unsafe")
                    self._constants.append(buf)
                else:
                    buf = self._consume(value, tensor, entry, sizes, host=True)
                    self._image_groups.append((buf.host, tuple(positions)))
                bound[tensor.name] = buf
            for tensor in entry.outputs:
                bound[tensor.name] = self._produce(f"{tensor.name}_{h}x{w}", tensor, entry, sizes)
            steps.append(pipe.backend.bind(entry.name, bound))
        for name in pipe.contract.image_rows():
            rows_spec = backbone.tensor(name)
            if self.total:
                width = rows_spec.shape(self.sizes)[-1]
                target = self._produce(name, rows_spec, backbone, self.sizes)
                for (h, w), src_row, dst_row, count in row_runs(self.key.image_sizes, tokens):
                    source = self.values[f"{name}_{h}x{w}"]
                    steps.append(Copy(source, target, src_row * width, dst_row * width, count * width))
            else:  # no images: one unused zero row keeps T >= 1
                zero = self._new(name, rows_spec.shape(self.sizes), numpy_dtype(rows_spec.dtype), host=True,
                                 producer="constant")
                self._constants.append(zero)

    def _consume(self, value: str, tensor: TensorSpec, entry: GraphEntry, sizes: dict, *, host: bool) -> Buffer:
        dtype = numpy_dtype(tensor.dtype)
        if value in self.values:
            buf = self.values[value]
            if buf.dtype != dtype:
                raise ManifestError(
                    f"graph {entry.name!r} reads {tensor.name!r} as {dtype}, but {self._producers[value]} holds it as "
                    f"{buf.dtype} — the export's graphs disagree on a dtype they exchange; re-export"
                )
            return buf
        if not host:
            raise ManifestError(f"graph {entry.name!r} input {tensor.name!r} is read before any graph produces it")
        buf = self._new(value, tensor.shape(sizes), dtype, host=True, producer="the host")
        self._writers.append((_writer(value, self.pipe), buf.host))
        self._host_inputs.append(buf)
        return buf

    def _produce(self, value: str, tensor: TensorSpec, entry: GraphEntry, sizes: dict, *, host: bool = False) -> Buffer:
        shape, dtype = tensor.shape(sizes), numpy_dtype(tensor.dtype)
        if value in self.values:  # produced again (per denoising step): same buffer
            buf = self.values[value]
            if (buf.shape, buf.dtype) != (shape, dtype):
                raise ManifestError(f"graph {entry.name!r} writes {value!r} as {shape} {dtype} after {buf.shape} {buf.dtype}")
            return buf
        return self._new(value, shape, dtype, host=host, producer=f"graph {entry.name!r}")

    def _step_table(self, tensor: TensorSpec, sizes: dict, k: int | None) -> Buffer:
        value = f"step_{k}"
        if value not in self.values:
            buf = self._new(value, tensor.shape(sizes), numpy_dtype(tensor.dtype), host=True, producer="constant")
            buf.host[...] = k
            self._constants.append(buf)
        return self.values[value]

    def _new(self, value: str, shape: tuple[int, ...], dtype: np.dtype, *, host: bool, producer: str) -> Buffer:
        buf = self.pipe.backend.allocate(value, shape, dtype, host=host)
        self.values[value] = buf
        self._producers[value] = producer
        return buf

    # ----------------------------------------------------------------- per call
    def fill(self, inputs: Any, noise: np.ndarray, step_weight: np.ndarray | None = None) -> None:
        """Write one control step's host inputs into this bucket's buffers (allocation-free)."""
        self.step_weight = step_weight
        for write, dst in self._writers:
            write(dst, inputs, noise, self)

    def release(self) -> None:
        backend = self.pipe.backend
        backend.release(*getattr(self, "programs", ()))
        backend.release(*self.values.values())
        self.values.clear()


# ------------------------------------------------------------------------------------------ host inputs
def _writer(value: str, pipe: Pipeline) -> Callable[..., None]:
    """How the host fills the buffer of one input value from a control step's inputs (no allocation).
    Sequence-shaped inputs ([..., S]) are right-padded to the bucket with the value ``padding`` gives."""
    if value == "image_index":
        def index(dst, x, noise, plan):
            pad_right(dst, x.image_mask, 0)
            fill_image_index(dst, dst)
        return index
    if value == "state":
        return lambda dst, x, noise, plan: np.copyto(dst, x.state, casting="unsafe")
    if value == "embodiment_id":
        return lambda dst, x, noise, plan: pipe.slots(x.embodiment_id, dst)
    if value == "actions_0":
        return lambda dst, x, noise, plan: np.copyto(dst, noise, casting="unsafe")
    if value == STEP_WEIGHT:
        return _write_step_weight
    if value.startswith("images_"):
        def images(dst, x, noise, plan):
            for host, positions in plan._image_groups:
                if host is dst:
                    for j, p in enumerate(positions):
                        np.copyto(dst[j], x.images[p])
        return images
    if value in pipe.sequence_inputs:
        fill, axis = padding(value, pipe.manifest), pipe.sequence_inputs[value]
        return lambda dst, x, noise, plan: pad_right(dst, getattr(x, value), fill, axis)
    raise ManifestError(f"the runtime does not know how to fill host input {value!r} — update the Pipeline's writers")


def _write_step_weight(dst: np.ndarray, x: Any, noise: np.ndarray, plan: Any) -> None:
    """The per-row update weights of this call, or 1 everywhere (the plain sampler) when none are given."""
    if plan.step_weight is None:
        dst.fill(1)
    else:
        np.copyto(dst, plan.step_weight, casting="unsafe")


class _HostWeight:
    """What ``_write_step_weight`` reads when the slow path writes host values without a bucket's plan."""

    def __init__(self, step_weight: np.ndarray | None) -> None:
        self.step_weight = step_weight


def padding(name: str, manifest: Manifest) -> int | bool:
    """The value the runtime's bucket padding gives a sequence input: the pad token for ids, 1 for M-RoPE
    position ids (as the processors pad), False / 0 for masks and features."""
    if name == "input_ids":
        return manifest.tokens["pad_token_id"]
    if name == "position_ids":
        return 1
    return 0


def _sequence_inputs(contract, graphs: dict[str, GraphEntry]) -> dict[str, int]:
    """name -> the position of S among its dims, for every value a (sub-)chain may take from the host
    (an ``OBS`` input, or a graph output given instead when the chain starts later)."""
    found: dict[str, int] = {}
    for stage in contract.control_step:
        for tensor in contract.graphs[stage.kind].inputs:
            if stage.feeds[tensor.name] not in (STEP, CARRY, GRID) and "S" in tensor.dims:
                found.setdefault(tensor.name, tensor.dims.index("S"))
    return found


def _check_group(size: tuple[int, int], count: int, limit: list[int] | None) -> None:
    if limit is not None and count > limit[-1]:
        raise ObservationError(
            f"{count} images of size {size[0]}x{size[1]} exceed the export's maximum of "
            f"{limit[-1]} per vision call — re-export with a larger --max-batch"
        )


def _refuse_per_size_vision(manifest: Manifest) -> None:
    """Exports of one vision graph per image size (before the one dynamic graph) are refused in one line."""
    legacy = sorted(g.name for g in manifest.graphs_of_kind("vision") if g.name != "vision" or "h" in g.dims)
    if legacy:
        raise ManifestError(
            f"the export has one vision graph per image size ({', '.join(legacy)}), made by an older gr00t-trt — "
            "re-export it with `gr00t-trt export` to get one vision graph serving every camera size"
        )


def _check_range(what: str, value: int, limit: list[int] | None, hint: str) -> None:
    if limit is not None and not (limit[0] <= value <= limit[-1]):
        raise ObservationError(f"{what} is {value}, the export supports {limit[0]}..{limit[-1]} — {hint}")


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} {list(value.shape)}"
    return type(value).__name__
