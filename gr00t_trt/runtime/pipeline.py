"""Chains the exported graphs of one control step over preallocated, backend-owned buffers.

Per control step: write the host inputs → vision (one call per image size) → image rows assembled in LLM
order → backbone → dit_context → the action unit (state encoder + N × (action encoder → DiT → action
decoder)), recorded once per shape bucket as one program a backend may capture → download the actions →
one synchronisation. Float tensors are cast between graphs of different precisions by Copy steps into
preallocated buffers. ``run_graph`` and ``run_stages`` are the slow debugging twins used by ``verify``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import EmbodimentError, Gr00tTrtError, ManifestError, ObservationError
from ..graphs import vision_graph_name
from ..manifest import GraphEntry, Manifest
from .backend import Backend, Buffer, Copy, Program, numpy_dtype
from .buffers import BucketKey, BufferSet, fill_image_index, image_groups, pad_right, padded_length, row_runs

#: per-stage timings reported in ``Pipeline.last_timings`` (ms), in run order, then the total
STAGES = ("vision", "backbone", "dit_context", "action_head")


class ModelInputsLike(Protocol):
    """What ``Pipeline.run`` reads (gr00t_trt.processing.preprocess.ModelInputs fits)."""

    input_ids: np.ndarray  # int64 [B, S]
    attention_mask: np.ndarray  # bool [B, S]
    image_mask: np.ndarray  # bool [B, S]
    images: list[np.ndarray]  # uint8 [h, w, 3], LLM order
    state: np.ndarray  # float [B, 1, Ds]
    embodiment_id: np.ndarray  # int64 [B], the checkpoint's ids (mapped to graph slots here)


def _shape(entry: GraphEntry, dims: tuple[str | int, ...], sizes: dict[str, int]) -> tuple[int, ...]:
    try:
        return tuple(d if isinstance(d, int) else sizes[d] for d in dims)
    except KeyError as exc:
        raise ManifestError(f"graph {entry.name!r} uses dimension {exc.args[0]!r}, which the manifest does not size") from None


class Pipeline:
    """Runs an export directory's graphs on a backend. Graphs are opened once; buffers and programs are
    made once per shape bucket (LRU of ``max_buckets``) and reused, so a steady state allocates nothing.

    ``run`` returns a buffer that is overwritten by the next call: copy it to keep it.
    """

    def __init__(self, manifest: Manifest, folder: str | Path, backend: Backend, *, bucket: int = 32,
                 max_buckets: int = 8) -> None:
        if bucket < 1:
            raise Gr00tTrtError(f"bucket must be a positive number of tokens, got {bucket}")
        self.manifest, self.folder, self.backend = manifest, Path(folder), backend
        self.bucket, self.max_buckets = bucket, max_buckets
        self.graphs = {kind: self._single(kind) for kind in
                       ("backbone", "dit_context", "state_encoder", "action_encoder", "dit", "action_decoder")}
        self.vision: dict[tuple[int, int], GraphEntry] = {
            (int(g.dims["h"]), int(g.dims["w"])): g for g in manifest.graphs_of_kind("vision")
        }
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
        self.last_timings: dict[str, float] = dict.fromkeys((*STAGES, "total"), 0.0)

    def _single(self, kind: str) -> GraphEntry:
        found = self.manifest.graphs_of_kind(kind)
        if len(found) != 1:
            raise ManifestError(f"the export must have exactly one {kind!r} graph, it has {len(found)} — re-export")
        return found[0]

    @property
    def dims(self) -> dict[str, int]:
        return self.manifest.dims

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
    def run(self, inputs: ModelInputsLike, noise: np.ndarray) -> np.ndarray:
        """Normalised actions float32 [B, H, Da] from model inputs and initial noise [B, H, Da]."""
        start = time.perf_counter()
        batch, seq = self.check(inputs, noise)
        plan = self._plan(batch, self._padded(seq), inputs.images)
        plan.fill(inputs, noise)
        be = self.backend
        m0 = be.mark()
        for buf in plan.uploads:
            be.upload(buf)
        be.launch(plan.programs[0])
        m1 = be.mark()
        be.launch(plan.programs[1])
        m2 = be.mark()
        be.launch(plan.programs[2])
        m3 = be.mark()
        be.launch(plan.programs[3])
        be.download(plan.action_pred)
        m4 = be.mark()
        be.synchronize()
        timings = self.last_timings
        timings["vision"] = be.elapsed_ms(m0, m1)
        timings["backbone"] = be.elapsed_ms(m1, m2)
        timings["dit_context"] = be.elapsed_ms(m2, m3)
        timings["action_head"] = be.elapsed_ms(m3, m4)
        timings["total"] = (time.perf_counter() - start) * 1e3
        return plan.action_pred.host

    def check(self, inputs: ModelInputsLike, noise: np.ndarray) -> tuple[int, int]:
        """Validate shapes, dtypes and limits with one-line errors; returns (B, S)."""
        ids = inputs.input_ids
        if not isinstance(ids, np.ndarray) or ids.ndim != 2 or ids.dtype.kind not in "iu":
            raise ObservationError(f"input_ids must be an integer array [B, S], got {_describe(ids)}")
        batch, seq = ids.shape
        for name in ("attention_mask", "image_mask"):
            mask = getattr(inputs, name)
            if not isinstance(mask, np.ndarray) or mask.shape != ids.shape or mask.dtype != np.bool_:
                raise ObservationError(f"{name} must be bool {list(ids.shape)}, got {_describe(mask)}")
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
        tokens, counts = 0, dict.fromkeys(self.vision, 0)
        for i, image in enumerate(inputs.images):
            if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ObservationError(f"image {i} must be uint8 [h, w, 3], got {_describe(image)}")
            size = image.shape[:2]
            if size not in self.vision:
                exported = ", ".join(f"{a}x{b}" for a, b in sorted(self.vision)) or "none"
                raise ObservationError(
                    f"image {i} is {size[0]}x{size[1]} but the export has vision graphs for {exported} only — "
                    f"re-export with --image-size {size[0]}x{size[1]}"
                )
            tokens += self.vision[size].dims["t"]
            counts[size] += 1
        for size, count in counts.items():
            _check_group(self.vision[size], count, self.manifest.dynamic_dims.get("n"))
        marked = int(np.count_nonzero(inputs.image_mask))
        if marked != tokens:
            raise ObservationError(
                f"the prompt has {marked} image tokens but the {len(inputs.images)} images give {tokens} — "
                "expected one image token per vision embedding row"
            )
        _check_range("image rows T", max(tokens, 1), self.manifest.dynamic_dims.get("T"), "use fewer or smaller images")
        return batch, seq

    def _padded(self, seq: int) -> int:
        return padded_length(seq, self.bucket, self.manifest.dynamic_dims.get("S"))

    def _plan(self, batch: int, seq: int, images: list[np.ndarray]) -> _Plan:
        key = BucketKey(batch, seq, tuple(image.shape[:2] for image in images))
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

    def run_stages(self, inputs: ModelInputsLike, noise: np.ndarray) -> dict[str, Any]:
        """Every intermediate result, computed graph by graph on fresh arrays with the hot path's padding:
        image_embeds [T, E] (LLM order), backbone_features [B, S, E] (unpadded), cross_k, cross_v,
        text_bias, image_bias (padded), state_features, actions (list of the N steps' outputs) and
        action_pred (float32, == actions[-1])."""
        batch, seq = self.check(inputs, noise)
        padded = self._padded(seq)
        ids = np.empty((batch, padded), np.int64)
        pad_right(ids, inputs.input_ids, self.manifest.tokens["pad_token_id"])
        attention, image_mask = np.empty((batch, padded), bool), np.empty((batch, padded), bool)
        pad_right(attention, inputs.attention_mask, False)
        pad_right(image_mask, inputs.image_mask, False)
        index = np.empty((batch, padded), np.int64)
        fill_image_index(image_mask, index)

        rows: list[np.ndarray | None] = [None] * len(inputs.images)
        for size, positions in image_groups([im.shape[:2] for im in inputs.images]).items():
            out = self._feed(self.vision[size], images=np.stack([inputs.images[p] for p in positions]))
            for j, p in enumerate(positions):
                rows[p] = out["image_embeds"][j]  # [t, E]
        backbone = self.graphs["backbone"]
        if rows:
            image_embeds = np.concatenate(rows, axis=0)  # [T, E]
        else:
            image_embeds = np.zeros((1, self.dims["E"]), numpy_dtype(backbone.tensor("image_embeds").dtype))
        features = self._feed(backbone, input_ids=ids, image_embeds=image_embeds, image_index=index,
                              attention_mask=attention)["backbone_features"]
        context = self._feed(self.graphs["dit_context"], backbone_features=features, image_mask=image_mask,
                             attention_mask=attention)
        slots = self.slots(inputs.embodiment_id)
        state_features = self._feed(self.graphs["state_encoder"], state=inputs.state,
                                    embodiment_id=slots)["state_features"]
        actions, per_step = noise, []
        for k in range(self.manifest.steps):
            step = np.full((batch,), k, np.int64)
            action_features = self._feed(self.graphs["action_encoder"], actions=actions, step=step,
                                         embodiment_id=slots)["action_features"]
            dit_out = self._feed(self.graphs["dit"], state_features=state_features, action_features=action_features,
                                 step=step, **context)["dit_out"]
            actions = self._feed(self.graphs["action_decoder"], dit_out=dit_out, actions=actions,
                                 embodiment_id=slots)["next_actions"]
            per_step.append(actions)
        return {
            "image_embeds": image_embeds,
            "backbone_features": features[:, :seq],
            **context,
            "state_features": state_features,
            "actions": per_step,
            "action_pred": per_step[-1].astype(np.float32) if per_step else noise.copy(),
        }

    def _feed(self, entry: GraphEntry, **arrays: np.ndarray) -> dict[str, np.ndarray]:
        """Cast each array to the graph's declared dtype (as the hot path's Copy steps do) and run it."""
        feeds = {t.name: np.asarray(arrays[t.name]).astype(numpy_dtype(t.dtype), copy=False) for t in entry.inputs}
        return self.run_graph(entry.name, feeds)


class _Plan:
    """Buffers, bindings and the four stage programs of one bucket."""

    def __init__(self, pipe: Pipeline, key: BucketKey) -> None:
        self.pipe, self.key = pipe, key
        self.bufs = BufferSet(pipe.backend)
        try:
            self._build()
        except BaseException:
            self.bufs.release()  # a half-built bucket must not hold device memory
            raise

    def _build(self) -> None:
        pipe, key, bufs = self.pipe, self.key, self.bufs
        be, m, g = pipe.backend, pipe.manifest, pipe.graphs
        batch, seq, sizes = key.batch, key.seq, key.image_sizes
        tokens = {size: int(pipe.vision[size].dims["t"]) for size in set(sizes)}
        total = sum(tokens[s] for s in sizes)
        dims = {**m.dims, "B": batch, "S": seq, "T": max(total, 1)}
        steps_n = m.steps
        final = f"actions_{steps_n}"

        def dtype(kind: str, tensor: str) -> np.dtype:
            return numpy_dtype(g[kind].tensor(tensor).dtype)

        def wire(entry: GraphEntry, steps: list, sizes_: dict[str, int], sources: dict[str, str] | None = None,
                 outputs: dict[str, str] | None = None) -> None:
            sources, outputs = sources or {}, outputs or {}
            bound: dict[str, Buffer] = {}
            for t in entry.inputs:
                bound[t.name] = bufs.consume(sources.get(t.name, t.name), numpy_dtype(t.dtype), steps)
            for t in entry.outputs:
                value = outputs.get(t.name, t.name)
                bound[t.name] = bufs.output(value, _shape(entry, t.dims, sizes_), numpy_dtype(t.dtype),
                                            host=value == final)
            steps.append(be.bind(entry.name, bound))

        # host inputs, in the dtype of their first consumer
        bufs.input("input_ids", (batch, seq), dtype("backbone", "input_ids"))
        bufs.input("attention_mask", (batch, seq), dtype("backbone", "attention_mask"))
        bufs.input("image_index", (batch, seq), dtype("backbone", "image_index"))
        bufs.input("image_mask", (batch, seq), dtype("dit_context", "image_mask"))
        bufs.input("state", (batch, 1, m.dims["Ds"]), dtype("state_encoder", "state"))
        bufs.input("embodiment_id", (batch,), dtype("state_encoder", "embodiment_id"))
        bufs.input("actions_0", (batch, m.dims["H"], m.dims["Da"]), dtype("action_encoder", "actions"))
        for k in range(steps_n):
            bufs.input(f"step_{k}", (batch,), dtype("action_encoder", "step"))

        # vision: one call per image size, then rows copied into image_embeds [T, E] in LLM order
        vision: list = []
        self.groups = image_groups(sizes)
        for size, positions in self.groups.items():
            entry = pipe.vision[size]
            name = vision_graph_name(*size)
            bufs.input(f"{name}.images", (len(positions), *size, 3), numpy_dtype(entry.tensor("images").dtype))
            wire(entry, vision, {**dims, **entry.dims, "n": len(positions)},
                 sources={"images": f"{name}.images"}, outputs={"image_embeds": f"{name}.image_embeds"})
        embeds_dtype = dtype("backbone", "image_embeds")
        width = m.dims["E"]
        if total:
            target = bufs.output("image_embeds", (total, width), embeds_dtype)
            for size, src_row, dst_row, rows in row_runs(sizes, tokens):
                source = bufs.canonical(f"{vision_graph_name(*size)}.image_embeds")
                vision.append(Copy(source, target, src_row * width, dst_row * width, rows * width))
        else:  # no images: one unused zero row keeps T >= 1
            bufs.input("image_embeds", (1, width), embeds_dtype)

        backbone: list = []
        wire(g["backbone"], backbone, dims)
        context: list = []
        wire(g["dit_context"], context, dims)
        action: list = []
        wire(g["state_encoder"], action, dims)
        for k in range(steps_n):
            step, actions = f"step_{k}", f"actions_{k}"
            wire(g["action_encoder"], action, dims, sources={"actions": actions, "step": step})
            wire(g["dit"], action, dims, sources={"step": step})
            wire(g["action_decoder"], action, dims, sources={"actions": actions},
                 outputs={"next_actions": f"actions_{k + 1}"})
        self.action_pred = bufs.consume(final, np.dtype(np.float32), action, host=True)

        self.programs: tuple[Program, ...] = (
            be.record("vision", vision), be.record("backbone", backbone),
            be.record("dit_context", context), be.record("action_head", action),
        )
        # constants: written and uploaded once per bucket
        for k in range(steps_n):
            for buf in bufs.variants(f"step_{k}"):
                buf.host[...] = k
        constants = {f"step_{k}" for k in range(steps_n)} | ({"image_embeds"} if not total else set())
        for value in constants:
            for buf in bufs.variants(value):
                be.upload(buf)
        be.synchronize()
        per_step = ["input_ids", "attention_mask", "image_mask", "image_index", "state", "embodiment_id", "actions_0"]
        per_step += [f"{vision_graph_name(*s)}.images" for s in self.groups]
        self.uploads = tuple(b for value in per_step for b in bufs.variants(value))
        self._ids = bufs.variants("input_ids")
        self._attention = bufs.variants("attention_mask")
        self._image_mask = bufs.variants("image_mask")
        self._index = bufs.variants("image_index")
        self._state = bufs.variants("state")
        self._slots = bufs.variants("embodiment_id")
        self._noise = bufs.variants("actions_0")
        self._images = tuple((bufs.canonical(f"{vision_graph_name(*s)}.images").host, tuple(p)) for s, p in self.groups.items())
        self._pad = m.tokens["pad_token_id"]

    def fill(self, inputs: ModelInputsLike, noise: np.ndarray) -> None:
        """Write one control step's host inputs into this bucket's buffers (allocation-free)."""
        for buf in self._ids:
            pad_right(buf.host, inputs.input_ids, self._pad)
        for buf in self._attention:
            pad_right(buf.host, inputs.attention_mask, False)
        for buf in self._image_mask:
            pad_right(buf.host, inputs.image_mask, False)
        mask = self._image_mask[0].host
        fill_image_index(mask, self._index[0].host)
        for buf in self._index[1:]:
            np.copyto(buf.host, self._index[0].host, casting="unsafe")
        for buf in self._state:
            np.copyto(buf.host, inputs.state, casting="unsafe")
        self.pipe.slots(inputs.embodiment_id, self._slots[0].host)
        for buf in self._slots[1:]:
            np.copyto(buf.host, self._slots[0].host, casting="unsafe")
        for buf in self._noise:
            np.copyto(buf.host, noise, casting="unsafe")
        images = inputs.images
        for host, positions in self._images:
            for j, p in enumerate(positions):
                np.copyto(host[j], images[p])

    def release(self) -> None:
        self.pipe.backend.release(*self.programs)
        self.bufs.release()


def _check_group(entry: GraphEntry, count: int, limit: list[int] | None) -> None:
    if limit is not None and count > limit[-1]:
        raise ObservationError(
            f"{count} images of size {entry.dims['h']}x{entry.dims['w']} exceed the export's maximum of "
            f"{limit[-1]} per vision call — re-export with a larger image count"
        )


def _check_range(what: str, value: int, limit: list[int] | None, hint: str) -> None:
    if limit is not None and not (limit[0] <= value <= limit[-1]):
        raise ObservationError(f"{what} is {value}, the export supports {limit[0]}..{limit[-1]} — {hint}")


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} {list(value.shape)}"
    return type(value).__name__
