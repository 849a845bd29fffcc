"""One control step as data: which graph runs when, and where each of its inputs comes from.

A family declares its chain as a tuple of ``Stage``s (``families/<name>/contract.py``) and wraps it,
with its graph and dim declarations, in a ``Contract``. The runtime's hot path (``runtime/pipeline.py``
plans buffers and programs from it), its slow twin (``Contract.evaluate``, used by
``Pipeline.run_stages``, ``verify`` and the export's example step) and the benchmark all read it.

An input's source is one of:
  ``OBS``    written by the host from the preprocessed observation (input ids, masks, images, state, ...);
  ``STEP``   the step table: the denoising step's index k;
  ``CARRY``  the actions entering denoising step k: the initial noise at k = 0, then the previous step's
             ``next_actions``;
  ``GRID``   a table of one image size that the host computes once per size and keeps (the vision
             graph's position tables), so one graph serves every camera size;
  a kind     the same-named output of that stage's graph (each vision output [n, t, X] is first assembled
             into the backbone's image rows [T, X] in LLM order).

numpy only: the robot side uses it without PyTorch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .graphs import DERIVED, DimSpec, GraphSpec, graph_name

OBS, STEP, CARRY, GRID = "obs", "step", "carry", "grid"
#: the carried value: its name at the encoder/decoder inputs, its start, and what replaces it each step
CARRIED_INPUT, CARRY_START, CARRY_OUTPUT = "actions", "noise", ("action_decoder", "next_actions")
#: the host input weighing each action row's Euler update (prefix conditioning; 1: the plain sampler)
STEP_WEIGHT = "step_weight"
#: stages a sub-chain may start from (the inputs of skipped stages become caller-provided values)
STARTS = ("vision", "backbone", "dit_context")

#: run(kind, graph name, feeds) -> outputs: one graph on host arrays (ORT session, torch module, ...)
GraphRunner = Callable[[str, str, dict[str, np.ndarray]], Mapping[str, np.ndarray]]
#: grids(input name, h, w) -> the ``GRID`` input of that name for h x w images
GridSource = Callable[[str, int, int], np.ndarray]


@dataclass(frozen=True)
class Stage:
    """One graph of the control step. ``program`` groups stages launched, captured and timed together;
    ``per_step`` stages run once per denoising step; ``per_image_size`` runs its graph once per image size
    (the images of one size form one call)."""

    kind: str
    feeds: Mapping[str, str]
    program: str
    per_step: bool = False
    per_image_size: bool = False


@dataclass(frozen=True)
class Contract:
    """A family's export contract: its graphs' declared I/O, its dims and its control step. Checked for
    consistency when made, so a family whose declarations disagree fails at import."""

    family: str
    graphs: Mapping[str, GraphSpec]
    dims: Mapping[str, DimSpec]
    control_step: tuple[Stage, ...]
    stages: Mapping[str, Stage] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", {s.kind: s for s in self.control_step})
        self.check()

    # ----------------------------------------------------------------- the declarations
    @property
    def dynamic_dims(self) -> tuple[str, ...]:
        return tuple(name for name, d in self.dims.items() if d.dynamic)

    @property
    def programs(self) -> tuple[str, ...]:
        """Program labels in run order (what ``Pipeline.last_timings`` reports)."""
        return tuple(dict.fromkeys(s.program for s in self.control_step))

    @property
    def action_head_kinds(self) -> tuple[str, ...]:
        """The graphs after the backbone (the action head, exportable on its own)."""
        kinds = [s.kind for s in self.control_step]
        return tuple(kinds[kinds.index("dit_context"):])

    def check(self) -> None:
        """The table is consistent with the graph declarations and the dims with ``DERIVED``."""
        seen: set[str] = set()
        for stage in self.control_step:
            spec = self.graphs[stage.kind]
            if set(stage.feeds) != set(spec.input_names):
                raise AssertionError(f"{self.family} stage {stage.kind}: feeds {sorted(stage.feeds)} != inputs "
                                     f"{spec.input_names}")
            for name, src in stage.feeds.items():
                if src in (OBS, STEP, CARRY, GRID):
                    continue
                if src not in seen:
                    raise AssertionError(f"{self.family} stage {stage.kind}: input {name!r} comes from {src!r}, "
                                         "which runs later")
                if name not in self.graphs[src].output_names:
                    raise AssertionError(f"{self.family} stage {stage.kind}: {src} has no output {name!r}")
            seen.add(stage.kind)
        producer, output = CARRY_OUTPUT
        if self.stages[producer].feeds.get(CARRIED_INPUT) != CARRY or output not in self.graphs[producer].output_names:
            raise AssertionError("the carried actions must be read and replaced by the same per-step stage")
        for name, dim in self.dims.items():
            if dim.product and tuple(dim.product) != DERIVED.get(name):
                raise AssertionError(f"{self.family} dim {name}: product {dim.product} != DERIVED {DERIVED.get(name)}")
        for spec in self.graphs.values():
            for tensor in (*spec.inputs, *spec.outputs):
                unknown = [d for d in tensor.dims if isinstance(d, str) and d not in self.dims]
                if unknown:
                    raise AssertionError(f"{self.family} {spec.kind}.{tensor.name}: undeclared dims {unknown}")

    # ----------------------------------------------------------------- sub-chains
    def chain(self, start: str = "vision") -> tuple[Stage, ...]:
        """The stages run from ``start`` on (a sub-chain, e.g. the action head alone from ``dit_context``)."""
        if start not in STARTS:
            raise ValueError(f"a control step can start at {', '.join(STARTS)}, not {start!r}")
        kinds = [s.kind for s in self.control_step]
        return self.control_step[kinds.index(start):]

    def segments(self, start: str = "vision") -> tuple[tuple[Stage, ...], ...]:
        """The chain from ``start`` in the pieces ``evaluate`` can run one at a time (``start=`` a piece's
        first kind, ``stop=`` the next one's): each once-per-control-step stage alone, then the per-step
        stages together (each denoising step feeds the next). The export builds and frees graphs piece by
        piece."""
        pieces: list[tuple[Stage, ...]] = []
        for stage in self.chain(start):
            if stage.per_step and pieces and pieces[-1][0].per_step:
                pieces[-1] += (stage,)
            else:
                pieces.append((stage,))
        return tuple(pieces)

    def between(self, start: str, stop: str | None) -> tuple[Stage, ...]:
        """The stages from segment start ``start`` up to (without) segment start ``stop`` (None: the end)."""
        firsts = [piece[0].kind for piece in self.segments()]
        for kind in (start, stop):
            if kind is not None and kind not in firsts:
                raise ValueError(f"a control step is evaluated from and to {', '.join(firsts)}, not {kind!r}")
        kinds = [s.kind for s in self.control_step]
        end = kinds.index(stop) if stop is not None else len(kinds)
        if end <= kinds.index(start):
            raise ValueError(f"evaluate from {start!r} to {stop!r}: {stop!r} does not come after {start!r}")
        return self.control_step[kinds.index(start):end]

    def external_inputs(self, start: str = "vision") -> tuple[str, ...]:
        """Names of the values the caller provides for a sub-chain (besides the step table and the noise)."""
        stages = self.chain(start)
        run = {s.kind for s in stages}
        names = [name for s in stages for name, src in s.feeds.items()
                 if src == OBS or (src not in (STEP, CARRY, GRID) and src not in run)]
        return tuple(dict.fromkeys(names))

    def image_rows(self) -> tuple[str, ...]:
        """The vision outputs the backbone reads as image rows (image_embeds, and any per-image features)."""
        vision = [s.kind for s in self.control_step if s.per_image_size]
        return tuple(name for s in self.control_step for name, src in s.feeds.items() if src in vision)

    # ----------------------------------------------------------------- slow interpreter
    def evaluate(self, run: GraphRunner, values: Mapping[str, Any], *, steps: int, start: str = "vision",
                 stop: str | None = None, no_image_rows: Callable[[str], np.ndarray] | None = None,
                 grids: GridSource | None = None) -> dict[str, Any]:
        """Every value of one control step, graph by graph on fresh host arrays (the slow, debuggable path).

        ``values`` holds the external inputs of the sub-chain (``external_inputs(start)``; ``images`` is a
        list of [h, w, 3] arrays in LLM order) and ``noise``. Returns them plus every graph output;
        ``actions`` is the list of the N steps' ``next_actions``. ``no_image_rows(name)`` gives the
        backbone's image rows of that name when there are no images (a graph needs T ≥ 1); ``grids`` the
        vision graph's per-size tables. ``stop``: run only up to that ``segments`` piece; a later call with
        ``start=stop`` on the returned values continues the same control step."""
        out: dict[str, Any] = dict(values)
        stages = self.between(start, stop)
        for stage in stages:
            if stage.per_step:
                continue
            if stage.per_image_size:
                out.update(self._run_vision(run, stage, out["images"], no_image_rows, grids))
                continue
            feeds = {name: out[name] for name in stage.feeds}
            out.update(run(stage.kind, graph_name(stage.kind), feeds))
        if not any(stage.per_step for stage in stages):
            return out
        actions, per_step = out[CARRY_START], []
        for k in range(steps):
            actions = self.denoise_step(run, k, out, actions)
            per_step.append(actions)
        out[CARRIED_INPUT] = per_step
        return out

    def denoise_step(self, run: GraphRunner, k: int, values: Mapping[str, Any], actions: np.ndarray) -> np.ndarray:
        """Denoising step k from ``actions`` through the per-step stages; ``values`` holds the context. A
        ``STEP_WEIGHT`` not among the values is 1 on every row (the plain sampler)."""
        batch = actions.shape[0]
        local: dict[str, Any] = dict(values)
        if STEP_WEIGHT not in local:
            local[STEP_WEIGHT] = np.ones(tuple(actions.shape[:2]), np.float32)
        local[STEP] = np.full((batch,), k, np.int64)
        local[CARRY] = actions
        for stage in self.control_step:
            if not stage.per_step:
                continue
            feeds = {name: local[src if src in (STEP, CARRY) else name] for name, src in stage.feeds.items()}
            local.update(run(stage.kind, graph_name(stage.kind), feeds))
        return local[CARRY_OUTPUT[1]]

    def _run_vision(self, run: GraphRunner, stage: Stage, images: Sequence[np.ndarray], no_image_rows,
                    grids: GridSource | None) -> dict[str, np.ndarray]:
        """One vision call per image size, each output's rows placed in LLM order: name -> [T, X]."""
        names = self.image_rows()
        rows: dict[str, list] = {name: [None] * len(images) for name in names}
        for (h, w), positions in image_groups([im.shape[:2] for im in images]).items():
            feeds: dict[str, np.ndarray] = {}
            for name, src in stage.feeds.items():
                if src == GRID:
                    if grids is None:
                        raise ValueError(f"vision input {name!r} is computed per image size — pass grids= to evaluate")
                    feeds[name] = grids(name, h, w)
            feeds["images"] = np.stack([images[p] for p in positions])  # [n, h, w, 3]
            outputs = run(stage.kind, graph_name(stage.kind), feeds)
            for name in names:
                for j, p in enumerate(positions):
                    rows[name][p] = outputs[name][j]  # [t, X]
        if not images:
            if no_image_rows is None:
                raise ValueError("no images: the backbone still needs one (unused) image row")
            return {name: no_image_rows(name) for name in names}
        return {name: np.concatenate(parts, axis=0) for name, parts in rows.items()}  # [T, X]


def image_groups(sizes: Sequence[tuple[int, int]]) -> dict[tuple[int, int], list[int]]:
    """LLM positions of the images of each size (one vision call per size), in first-seen order."""
    groups: dict[tuple[int, int], list[int]] = {}
    for position, size in enumerate(sizes):
        groups.setdefault((int(size[0]), int(size[1])), []).append(position)
    return groups
