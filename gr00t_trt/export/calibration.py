"""Calibration sets and per-graph calibration feeds: each graph's own inputs as the fp32 pipeline
produces them for calibration observations.

An fp8 graph's activation scales are only as good as the activations they were measured on, so every
graph is calibrated on what it really sees in a control step: the observations are preprocessed as the
runtime does, then the fp32 graph modules are chained (vision → backbone → dit_context →
state_encoder → N × (action_encoder → dit → action_decoder)) and each graph's inputs are recorded —
every denoising step, so all timesteps are seen.

Observations are recorded ones (``export --calib DIR``: ``.npz`` files in the ``--obs`` format, e.g.
written by ``run --record DIR`` through ``record_observation``) or synthetic ones; the calibration set
says which, and its fingerprint and size go into the manifest.

The same chain also gives the per-graph reference inputs and outputs of the CPU preflight.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..base.errors import EmbodimentError, ExportError
from ..contract.dataflow import CARRY_START, Contract
from ..processing.observations import OBSERVATION_SUFFIX
from ..runtime.buffers import fill_image_index
from .examples import reference_grids, run_torch_graph

#: synthetic calibration observations per exported embodiment (enough for max-abs ranges of random
#: weights; pass recorded observations for a real robot)
DEFAULT_SYNTHETIC_COUNT = 4


@dataclass(frozen=True)
class CalibrationSet:
    """Observations to calibrate on: (embodiment tag, observation) pairs and where they came from."""

    source: str  # "recorded" | "synthetic"
    observations: tuple[tuple[str, dict], ...]
    fingerprint: str
    location: str | None = None  # the folder of recorded observations

    @property
    def size(self) -> int:
        return len(self.observations)

    def describe(self) -> str:
        """One line for the console and reports; says plainly when the data is synthetic."""
        if self.source == "synthetic":
            return (f"SYNTHETIC calibration ({self.size} random observations) — pass --calib DIR with "
                    "recorded observations for scales that match the robot")
        return f"recorded calibration: {self.size} observations from {self.location}"

    def to_dict(self) -> dict:
        return {"source": self.source, "observations": self.size, "fingerprint": self.fingerprint,
                "location": self.location}


def recorded_calibration_set(folder: str | Path, processor, embodiments: Sequence[str]) -> CalibrationSet:
    """Every ``.npz`` under ``folder``; the embodiment is the parent folder's name when it is exported,
    else the one exported embodiment whose observation keys the file has."""
    from ..processing.observations import load_observation

    folder = Path(folder)
    if not folder.is_dir():
        raise ExportError(f"--calib {folder} is not a folder — expected a folder of observation .npz files")
    files = sorted(folder.rglob(f"*{OBSERVATION_SUFFIX}"))
    files = [f for f in files if not f.name.startswith(".")]
    if not files:
        raise ExportError(f"--calib {folder} holds no {OBSERVATION_SUFFIX} files — record some with `run --record`")
    digest = hashlib.sha256()
    observations = []
    for path in files:
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(path.read_bytes())
        obs = load_observation(path)
        observations.append((_embodiment_of(path, obs, processor, embodiments), obs))
    return CalibrationSet("recorded", tuple(observations), digest.hexdigest(), str(folder))


def _embodiment_of(path: Path, obs: dict, processor, embodiments: Sequence[str]) -> str:
    if path.parent.name in embodiments:
        return path.parent.name
    keys = set(obs)
    matches = [
        tag for tag in embodiments
        if {f"video.{k}" for k in processor.embodiment(tag).video_keys} <= keys
        and {f"state.{k}" for k in processor.embodiment(tag).state_keys} <= keys
    ]
    if len(matches) != 1:
        raise EmbodimentError(
            f"{path}: cannot tell its embodiment — {len(matches)} exported embodiments match its keys; "
            "put it in a sub-folder named after the embodiment tag"
        )
    return matches[0]


def synthetic_calibration_set(
    processor, embodiments: Sequence[str], image_sizes: Sequence[tuple[int, int]],
    count: int = DEFAULT_SYNTHETIC_COUNT, seed: int = 1000,
) -> CalibrationSet:
    """``count`` random observations per embodiment, cameras cycling through the exported sizes."""
    from ..processing.observations import synthetic_observation

    sizes = list(image_sizes)
    observations = []
    for tag in embodiments:
        for i in range(count):
            rotated = sizes[i % len(sizes):] + sizes[: i % len(sizes)]
            obs = synthetic_observation(processor, tag, seed=seed + i, image_sizes=rotated)
            observations.append((tag, obs))
    text = f"synthetic:{seed}:{count}:{','.join(embodiments)}:{sizes}"
    return CalibrationSet("synthetic", tuple(observations), hashlib.sha256(text.encode()).hexdigest())


# ------------------------------------------------------------------------------------ the fp32 chain
@dataclass
class GraphRecords:
    """Per graph name: the feeds each call got and the outputs it returned (numpy, graph I/O order)."""

    inputs: dict[str, list[dict[str, np.ndarray]]] = field(default_factory=dict)
    outputs: dict[str, list[dict[str, np.ndarray]]] = field(default_factory=dict)

    def add(self, name: str, feeds: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> None:
        self.inputs.setdefault(name, []).append(feeds)
        self.outputs.setdefault(name, []).append(outputs)


def torch_runner(modules: dict, contract: Contract):
    """Run graph ``name`` of ``modules`` (name → (kind, module, dims)) in PyTorch on numpy feeds."""

    def run(name: str, kind: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return run_torch_graph(modules[name][1], contract.graphs[kind], feeds)

    return run


def chain_values(inputs, contract: Contract, *, slot_of: dict[int, int], noise: np.ndarray) -> dict:
    """The external values of one control step from preprocessed model inputs (every input the
    family's chain takes from the host, by name; embodiment ids as the export's slots) and the noise."""
    if not inputs.images:
        raise ExportError("calibration observation has no images — expected at least one camera")
    image_index = np.empty(inputs.image_mask.shape, np.int64)
    fill_image_index(inputs.image_mask, image_index)
    values = {name: getattr(inputs, name) for name in contract.external_inputs() if hasattr(inputs, name)}
    values.update(images=list(inputs.images), image_index=image_index, embodiment_id=np.array(
        [slot_of[int(e)] for e in inputs.embodiment_id], np.int64))
    values[CARRY_START] = noise
    return values


def recording(run, records: GraphRecords, activation=np.float32, names=None, outputs: bool = True):
    """``run`` (name, kind, feeds) as a dataflow runner that gives each graph its float feeds in
    ``activation`` dtype and records its feeds (and outputs) — only for graph ``names`` when given."""

    def call(kind: str, name: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {k: (v.astype(activation, copy=False) if v.dtype.kind == "f" else v) for k, v in feeds.items()}
        out = run(name, kind, feeds)
        if names is None or name in names:
            records.inputs.setdefault(name, []).append(feeds)
            if outputs:
                records.outputs.setdefault(name, []).append(out)
        return out

    return call


def chain_graphs(
    run, inputs, contract: Contract, *, steps: int, slot_of: dict[int, int], noise: np.ndarray,
    activation=np.float32, records: GraphRecords | None = None, grids=None,
) -> GraphRecords:
    """One control step through every graph along the dataflow with ``run(name, kind, feeds)``, recording
    each graph's feeds and outputs. ``inputs`` is a preprocessed ``ModelInputs``; float feeds are given to
    each graph in ``activation`` dtype (the export's inter-graph dtype); ``grids``: the vision graph's
    per-size tables (``dataflow.evaluate``)."""
    records = records if records is not None else GraphRecords()
    values = chain_values(inputs, contract, slot_of=slot_of, noise=noise)
    contract.evaluate(recording(run, records, activation), values, steps=steps, grids=grids)
    return records


def calibration_chains(
    calibration: CalibrationSet, preprocessor, config, contract: Contract, slot_of: dict[int, int], seed: int = 0
) -> list[dict]:
    """The external values of every calibration observation's control step (one noise draw each), for
    ``evaluate`` to run through the fp32 graphs piece by piece."""
    rng = np.random.default_rng(seed)
    chains = []
    for tag, obs in calibration.observations:
        inputs = preprocessor(obs, tag)  # any camera size: the vision graph serves every size
        noise = rng.standard_normal((len(inputs.embodiment_id), config.action_horizon, config.max_action_dim))
        chains.append(chain_values(inputs, contract, slot_of=slot_of, noise=noise.astype(np.float32)))
    return chains


def calibration_records(
    modules: dict, calibration: CalibrationSet, preprocessor, config, contract: Contract, slot_of: dict[int, int],
    seed: int = 0,
) -> GraphRecords:
    """Every graph's fp32 inputs and outputs over the calibration set (one noise draw per observation)."""
    records = GraphRecords()
    run = recording(torch_runner(modules, contract), records)
    for values in calibration_chains(calibration, preprocessor, config, contract, slot_of, seed):
        contract.evaluate(run, values, steps=config.num_inference_timesteps, grids=reference_grids(modules))
    return records
