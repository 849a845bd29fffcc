"""``bench --compare-reference CKPT``: the unoptimised PyTorch reference on the same observation and
initial noise as ours, with the speed-up per stage and end to end and the actions' agreement.

Both sides share the preprocessing and decoding code (numpy), so only the network differs. When the
reference fits in memory next to our loaded policy, calls alternate ours / reference in one process
(same machine state for both; the default); otherwise the reference runs in its own process after ours is closed
(a full-size fp32 reference and our fp32 graphs do not fit 23 GB together). This module imports torch
(lazily), unlike the rest of ``gr00t_trt.bench``.

The separate process is ``python -m gr00t_trt.bench.reference REQUEST.json``: it reads the observation,
noise and settings from files and writes the reference's timings and actions next to them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..base.errors import Gr00tTrtError, VerificationError
from .machine import CpuMeter, available_ram_bytes
from .stats import LatencyStats, summarize

#: stages both sides report, in order
COMPARED = ("preprocess", "vision", "backbone", "action head", "decode")
MODES = ("auto", "interleaved", "process")


@dataclass
class ReferenceComparison:
    """Reference vs ours: p50 per stage, end to end, and how closely the physical actions agree."""

    mode: str  # "interleaved" | "separate process"
    iters: int
    reference: dict[str, LatencyStats]
    reference_e2e: LatencyStats
    ours: dict[str, LatencyStats]
    ours_e2e: LatencyStats
    agreement: dict[str, float]  # rel_l2, max_abs, cosine over every physical action value
    other_cores: float | None = None  # other processes' CPU use while the reference was timed (CpuMeter)

    def rows(self) -> dict[str, dict[str, float]]:
        out = {}
        for key in COMPARED:
            if key in self.reference and key in self.ours:
                r, o = self.reference[key].p50, self.ours[key].p50
                out[key] = {"reference": r, "ours": o, "speedup": r / o if o > 0 else float("inf")}
        r, o = self.reference_e2e.p50, self.ours_e2e.p50
        out["end to end"] = {"reference": r, "ours": o, "speedup": r / o if o > 0 else float("inf")}
        return out

    def reference_stage_p50(self) -> dict[str, float]:
        return {k: s.p50 for k, s in self.reference.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "iters": self.iters,
            "rows_p50_ms": self.rows(),
            "reference_ms": {k: s.to_dict() for k, s in self.reference.items()},
            "reference_end_to_end_ms": self.reference_e2e.to_dict(),
            "ours_ms": {k: s.to_dict() for k, s in self.ours.items()},
            "ours_end_to_end_ms": self.ours_e2e.to_dict(),
            "agreement": self.agreement,
            "other_processes_cores": self.other_cores,
        }


def ours_grouped(timings: dict[str, float]) -> dict[str, float]:
    """Our policy's stages in the reference's grouping: the action head is dit_context plus the
    state encoder and denoising steps (or the runtime's ``action_head``, which holds them)."""
    head_parts = [k for k in timings if k.startswith("denoise_") or k == "state_encoder"]
    head = sum(timings[k] for k in head_parts) if head_parts else timings.get("action_head", 0.0)
    return {
        "preprocess": timings.get("preprocess", 0.0),
        "vision": timings.get("vision", 0.0),
        "backbone": timings.get("backbone", 0.0),
        "action head": timings.get("dit_context", 0.0) + head,
        "decode": timings.get("decode", 0.0),
    }


def agreement(reference: dict[str, np.ndarray], ours: dict[str, np.ndarray]) -> dict[str, float]:
    """rel L2, max abs difference and cosine over all action keys (physical units), in float64."""
    reference, ours = _plain_keys(reference), _plain_keys(ours)
    if set(reference) != set(ours):
        raise VerificationError(f"reference and ours answer different action keys: {sorted(reference)} vs {sorted(ours)}")
    ref = np.concatenate([np.asarray(reference[k], np.float64).ravel() for k in sorted(reference)])
    got = np.concatenate([np.asarray(ours[k], np.float64).ravel() for k in sorted(reference)])
    diff = got - ref
    norm_ref, norm_got = float(np.linalg.norm(ref)), float(np.linalg.norm(got))
    return {
        "rel_l2": float(np.linalg.norm(diff)) / max(norm_ref, 1e-30),
        "max_abs": float(np.max(np.abs(diff))) if diff.size else 0.0,
        "cosine": float(ref @ got) / max(norm_ref * norm_got, 1e-30),
    }


def _plain_keys(actions: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Flat answers name keys "action.<key>", nested ones "<key>": compare them by "<key>"."""
    return {k.removeprefix("action."): v for k, v in actions.items()}


# ------------------------------------------------------------------------------------------ the reference side
class ReferenceRunner:
    """The PyTorch reference (fp32) timed per stage, fed through our preprocessor and decoder."""

    def __init__(self, checkpoint: str | Path, preprocessor: Any, manifest: Any) -> None:
        import torch

        self.torch = torch
        self.face = manifest.model_family.export()  # the export's family: its reference and stage split
        try:
            model, _ = self.face.load_reference(checkpoint, manifest, "the export")
        except VerificationError:
            raise VerificationError(
                f"{checkpoint} has a different config than the export was made from — pass the checkpoint it was exported from"
            ) from None
        self.model, self.preprocessor = model, preprocessor

    def __call__(self, observation: dict, tag: str, noise: np.ndarray) -> tuple[float, dict[str, float], dict]:
        """(end-to-end ms, stage ms, physical actions) of one reference control step."""
        torch, model = self.torch, self.model
        start = time.perf_counter()
        inputs = self.preprocessor(observation, tag)
        prepared = time.perf_counter()
        with torch.inference_mode():
            timed, action = self.face.timed_reference(model, inputs, noise)  # vision, backbone, action head
        headed = time.perf_counter()
        actions = self.preprocessor.decode(action, inputs)
        done = time.perf_counter()
        stages = {"preprocess": prepared - start, **timed, "decode": done - headed}
        return (done - start) * 1e3, {k: v * 1e3 for k, v in stages.items()}, actions


def reference_bytes(checkpoint: str | Path) -> int:
    """Memory the fp32 reference needs for its weights (headers only; unused tensors included, a small
    overestimate)."""
    from ..model.checkpoint import resolve_checkpoint_headers

    _, index = resolve_checkpoint_headers(checkpoint)
    return 4 * sum(info.numel for info in index.values())


def choose_mode(mode: str, checkpoint: str | Path) -> str:
    """"interleaved" when the reference fits in the available memory with a 1.5× margin, else "process"."""
    if mode not in MODES:
        raise Gr00tTrtError(f"reference mode {mode!r} — expected one of: {', '.join(MODES)}")
    if mode != "auto":
        return mode
    available = available_ram_bytes()
    return "interleaved" if available is None or available > 1.5 * reference_bytes(checkpoint) else "process"


def compare_interleaved(policy: Any, checkpoint: str | Path, observation: dict, *, embodiment: str | None = None,
                        iters: int = 10, warmup: int = 2, seed: int = 0, progress=None,
                        settle_s: float = 0.05) -> ReferenceComparison:
    """Alternate one call of ours and one of the reference, ``iters`` times after ``warmup`` pairs.

    ``settle_s``: pause before each call, so the other side's worker threads (PyTorch's OpenMP pool
    spins after its work) are idle again and do not compete with the side being timed."""
    tag = policy.resolve_embodiment(embodiment)
    noise = _noise(policy, observation, tag, seed)
    runner = ReferenceRunner(checkpoint, policy.preprocessor, policy.manifest)
    ours_e2e, ours_st, ref_e2e, ref_st = [], {}, [], {}
    ours_actions = ref_actions = None
    meter = None
    for i in range(warmup + iters):
        if i == warmup:
            meter = CpuMeter().start()
        time.sleep(settle_s)
        start = time.perf_counter()
        ours_actions = policy.predict(observation, embodiment=tag, noise=noise)
        elapsed = (time.perf_counter() - start) * 1e3
        grouped = ours_grouped(dict(policy.last_timings))
        time.sleep(settle_s)
        r_e2e, r_st, ref_actions = runner(observation, tag, noise)
        if i >= warmup:
            ours_e2e.append(elapsed)
            ref_e2e.append(r_e2e)
            for k, v in grouped.items():
                ours_st.setdefault(k, []).append(v)
            for k, v in r_st.items():
                ref_st.setdefault(k, []).append(v)
        if progress:
            progress("reference (interleaved)", i + 1, warmup + iters)
    return ReferenceComparison(
        "interleaved", iters, {k: summarize(v) for k, v in ref_st.items()}, summarize(ref_e2e),
        {k: summarize(v) for k, v in ours_st.items()}, summarize(ours_e2e), agreement(ref_actions, ours_actions),
        meter.foreign_cores() if meter else None,
    )


def compare_separate_process(report: Any, policy: Any, checkpoint: str | Path, observation: dict, *,
                       embodiment: str | None = None, iters: int = 10, warmup: int = 2, seed: int = 0,
                       timeout: float | None = None) -> ReferenceComparison:
    """Ours from a finished BenchReport (its samples and one more call for the actions), the reference in
    its own process — call after the policy's work is done; the caller closes the policy first when
    memory is short (see ``close_before_reference``)."""
    tag = policy.resolve_embodiment(embodiment)
    noise = _noise(policy, observation, tag, seed)
    ours_actions = policy.predict(observation, embodiment=tag, noise=noise)
    ours_st: dict[str, list[float]] = {}
    stage_samples = {k: v for k, v in report.samples.items() if k != "end_to_end"}
    for i in range(len(report.samples["end_to_end"])):
        for k, v in ours_grouped({k: s[i] for k, s in stage_samples.items()}).items():
            ours_st.setdefault(k, []).append(v)
    folder, manifest = policy.folder, policy.manifest
    policy.close()  # free our sessions before the reference loads
    meter = CpuMeter().start()  # the child's time counts as ours once it has finished
    result = run_reference_process(checkpoint, folder, manifest, observation, tag, noise, iters=iters,
                                   warmup=warmup, timeout=timeout)
    return ReferenceComparison(
        "separate process", iters, {k: summarize(v) for k, v in result["stages"].items()},
        summarize(result["end_to_end"]), {k: summarize(v) for k, v in ours_st.items()},
        report.end_to_end, agreement(result["actions"], ours_actions), meter.foreign_cores(),
    )


def _noise(policy: Any, observation: dict, tag: str, seed: int) -> np.ndarray:
    batch = policy.preprocessor(observation, tag).input_ids.shape[0]
    dims = policy.manifest.dims
    return np.random.default_rng(seed).standard_normal((batch, dims["H"], dims["Da"]), dtype=np.float32)


def run_reference_process(checkpoint: str | Path, export_dir: str | Path, manifest: Any, observation: dict, tag: str,
                          noise: np.ndarray, *, iters: int, warmup: int, timeout: float | None = None) -> dict[str, Any]:
    """Run the reference in a fresh Python process; returns stage samples, end-to-end samples, actions."""
    from ..processing.observations import save_observation

    with tempfile.TemporaryDirectory(prefix="gr00t-bench-ref-") as tmp:
        tmp = Path(tmp)
        save_observation(tmp / "obs.npz", observation)
        np.save(tmp / "noise.npy", noise)
        request = {"checkpoint": str(checkpoint), "export_dir": str(export_dir), "embodiment": tag,
                   "iters": iters, "warmup": warmup, "folder": str(tmp)}
        (tmp / "request.json").write_text(json.dumps(request))
        done = subprocess.run([sys.executable, "-m", "gr00t_trt.bench.reference", str(tmp / "request.json")],
                              capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise VerificationError(f"the reference process failed (exit {done.returncode}) — {last}")
        result = json.loads((tmp / "result.json").read_text())
        with np.load(tmp / "actions.npz") as data:
            result["actions"] = {k: data[k] for k in data.files}
    return result


def _worker(request_path: str) -> None:
    """Entry point of the separate reference process."""
    from ..contract.manifest import load_manifest
    from ..processing.observations import load_observation

    request = json.loads(Path(request_path).read_text())
    folder = Path(request["folder"])
    manifest = load_manifest(request["export_dir"], verify_files=False)
    preprocessor = manifest.model_family.runtime().make_preprocessor(Path(request["export_dir"]), manifest)
    observation = load_observation(folder / "obs.npz")
    noise = np.load(folder / "noise.npy")
    runner = ReferenceRunner(request["checkpoint"], preprocessor, manifest)
    e2e, stages, actions = [], {}, None
    for i in range(request["warmup"] + request["iters"]):
        ms, st, actions = runner(observation, request["embodiment"], noise)
        if i >= request["warmup"]:
            e2e.append(ms)
            for k, v in st.items():
                stages.setdefault(k, []).append(v)
    np.savez(folder / "actions.npz", **actions)
    (folder / "result.json").write_text(json.dumps({"end_to_end": e2e, "stages": stages}))


if __name__ == "__main__":  # pragma: no cover - exercised through run_reference_process
    _worker(sys.argv[1])
