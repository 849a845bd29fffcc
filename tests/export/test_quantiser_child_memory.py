"""The export's printed quantiser-child peak RSS is the child's own (issue 20's memory bound is read off it)."""

from __future__ import annotations

import resource
import subprocess
import sys

import numpy as np


def test_a_childs_peak_rss_is_its_own_not_its_parents():
    ballast = np.ones((700 << 20) >> 3)  # 700 MB touched in this process before the child starts
    done = subprocess.run([sys.executable, "-c", "from gr00t_trt.bench.machine import peak_rss_bytes; print(peak_rss_bytes())"],
                          capture_output=True, text=True, check=True)
    own = int(done.stdout)
    inherited = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # what the export used to print
    assert ballast.sum() > 0
    assert 0 < own < 500 << 20, own  # the interpreter and its imports (≈ 230 MB), not the parent's 700 MB
    assert inherited >= 700 << 20  # RUSAGE_CHILDREN starts from the parent's high-water mark


def test_the_export_reports_the_largest_childs_own_peak(monkeypatch):
    from gr00t_trt.export import driver, quantize

    monkeypatch.setattr(quantize, "_CHILD_PEAKS", [])
    assert "quantiser child" not in driver.peak_rss_text()  # no child ran
    quantize._CHILD_PEAKS.extend([3 << 30, 5 << 29, 0])
    assert driver.peak_rss_text().endswith("(quantiser child 3.00 GiB)")
