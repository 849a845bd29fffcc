"""Was the machine quiet while we timed? A speed-up measured while other processes share the CPU says
more about them than about us (one run printed 23.84× for a 1.68× speed-up, with 1.4 of 2 cores taken).

Two signs, both recorded around the timed calls: the CPU time other processes used (``CpuMeter``), and this
CPU's own GEMM rate measured before and after the timing (it moves when others compete for the cores or
the memory bus). Either past its bound makes the run noisy: every ratio is then marked, and a speed-up
is withheld unless the user asks for it anyway (``bench --allow-noisy``). Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: other processes' CPU use during the timed calls, in cores, from which a comparison is noisy
NOISY_CORES = 0.25
#: relative change of this CPU's GEMM rate across the timing from which a comparison is noisy
NOISY_FLOOR_DRIFT = 0.10


@dataclass
class Contention:
    """Other load seen per timed phase ("ours", "reference") and the CPU GEMM rates measured around them."""

    other_cores: dict[str, float | None] = field(default_factory=dict)
    floor_gflops: list[float] = field(default_factory=list)  # in the order measured: before, after, ...

    @property
    def floor_drift(self) -> float | None:
        """(fastest − slowest) ÷ fastest of the GEMM rates measured, or None with fewer than two."""
        if len(self.floor_gflops) < 2 or max(self.floor_gflops) <= 0:
            return None
        return (max(self.floor_gflops) - min(self.floor_gflops)) / max(self.floor_gflops)

    def reasons(self) -> list[str]:
        """Why the timing is noisy (empty when it is not)."""
        out = [f"other processes used {cores:.2f} cores during {phase}" for phase, cores in self.other_cores.items()
               if cores is not None and cores > NOISY_CORES]
        drift = self.floor_drift
        if drift is not None and drift > NOISY_FLOOR_DRIFT:
            rates = " → ".join(f"{g:.0f}" for g in self.floor_gflops)
            out.append(f"this CPU's GEMM rate moved {rates} GFLOP/s across the timing")
        return out

    @property
    def noisy(self) -> bool:
        return bool(self.reasons())

    def note(self) -> str:
        """One line for the report: what was seen, and whether it is within bounds."""
        if self.noisy:
            return ("NOISY: " + "; ".join(self.reasons()) + f" (bounds: {NOISY_CORES} cores, "
                    f"{NOISY_FLOOR_DRIFT:.0%} GEMM rate change) — ratios marked; rerun on a quiet machine")
        seen = [f"{c:.2f} cores during {p}" for p, c in self.other_cores.items() if c is not None]
        return "quiet: other processes used " + (", ".join(seen) if seen else "? cores") + (
            f", GEMM rate within {self.floor_drift:.0%}" if self.floor_drift is not None else "")

    def to_dict(self) -> dict[str, Any]:
        return {"noisy": self.noisy, "reasons": self.reasons(), "other_processes_cores": self.other_cores,
                "cpu_gemm_gflops": self.floor_gflops, "gemm_rate_change": self.floor_drift,
                "bounds": {"other_cores": NOISY_CORES, "gemm_rate_change": NOISY_FLOOR_DRIFT}}


def mark(ratio: str, contention: Contention | None) -> str:
    """A ratio as printed: marked when the timing it comes from was noisy."""
    return f"{ratio} (noisy)" if contention is not None and contention.noisy else ratio
