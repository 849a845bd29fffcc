"""`gr00t-trt demo`: the whole flow on a tiny synthetic checkpoint, for a newcomer.

make a checkpoint (real layout, random weights) → export the ONNX graphs → run a control step on the
embedded default backend (ONNX Runtime) → verify against the PyTorch reference. Re-running reuses
nothing: each run starts from a fresh work directory so what it shows is what it did. Returns a
``DemoReport`` that the CLI renders; nothing here prints.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DEMO_STEPS = (
    "synthetic checkpoint (real N1.6 layout, tiny sizes, random weights)",
    "export to ONNX",
    "one control step on ONNX Runtime",
    "verify against the PyTorch reference",
)


@dataclass
class DemoReport:
    checkpoint: Path
    export_dir: Path
    manifest: Any  # gr00t_trt.contract.manifest.Manifest
    actions: dict[str, np.ndarray]
    timings: dict[str, float]  # steady state (second call), ms
    parity: Any  # gr00t_trt.verification.parity.ParityReport
    seconds: float

    @property
    def passed(self) -> bool:
        return self.parity.passed


def run_demo(workdir: str | Path, *, model: str | None = None, embodiment: str | None = None,
             on_step: Callable[[int], None] | None = None,
             progress: Callable[[str, str], None] | None = None) -> DemoReport:
    """Run the demo in ``workdir`` on the family named ``model`` (default: the first); ``on_step(i)`` is called as
    step i of ``DEMO_STEPS`` starts."""
    from ..export.driver import ExportOptions, export_checkpoint
    from ..families.registry import FAMILIES, family_named
    from ..processing.observations import synthetic_observation
    from ..runtime.policy import Policy
    from ..verification.verify import verify_export

    on_step = on_step or (lambda index: None)
    family = family_named(model) if model else FAMILIES[0]
    embodiment = embodiment or family.demo_embodiment
    workdir = Path(workdir)
    checkpoint, export_dir = workdir / "checkpoint-tiny", workdir / "export-tiny"
    for old in (checkpoint, export_dir):
        if old.exists():
            shutil.rmtree(old)
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    on_step(0)
    family.export().make_checkpoint(checkpoint, "tiny", seed=0)
    on_step(1)
    manifest = export_checkpoint(checkpoint, export_dir, ExportOptions(), progress)
    on_step(2)
    with Policy.load(export_dir, backend="ort") as policy:
        obs = synthetic_observation(policy.preprocessor, embodiment, seed=0, image_sizes=manifest.image_sizes)
        policy.predict(obs, embodiment=embodiment, seed=0)
        actions = policy.predict(obs, embodiment=embodiment, seed=0)  # second call: steady-state timings
        timings = dict(policy.last_timings)
    on_step(3)
    parity = verify_export(export_dir, checkpoint, backend="ort", embodiments=(embodiment,), seeds=2)
    return DemoReport(checkpoint, export_dir, manifest, actions, timings, parity, time.perf_counter() - started)
