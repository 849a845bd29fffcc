"""benchmarks/robot_loop.py's simulated part, shortened: every loop variant runs and the report renders the
prefix-conditioning rows and ratio (the full run writes benchmarks/results/robot_loop.*)."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "robot_loop.py"


def load_script():
    spec = importlib.util.spec_from_file_location("robot_loop_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_simulated_loops_and_report():
    bench = load_script()
    args = argparse.Namespace(hz=200.0, ticks=80, delay_fraction=0.6, threshold=0.75, noise=0.1)
    simulated = bench.simulated(args)
    assert set(simulated) == {"align=arrival, handover=replace", "align=arrival, handover=crossfade",
                              "align=arrival, handover=replace, rtc", "align=time, handover=replace",
                              "align=time, handover=replace, rtc"}
    for name, result in simulated.items():
        assert result["ticks"] == 80 and result["step_l2_max"] >= result["step_l2_median"] > 0, name
    result = {"args": vars(args), "command": "test", "date": "now", "machine": "here", "loadavg": [0.0, 0.0],
              "simulated": simulated}
    text = bench.markdown(result)
    assert "align=arrival, handover=replace, rtc" in text and "mean jump on the simulated task" in text
