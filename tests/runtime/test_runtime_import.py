"""The runtime imports without torch and stays cheap to import."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def test_runtime_imports_with_torch_blocked():
    result = run("""
        import sys
        sys.modules["torch"] = None  # any `import torch` now raises ImportError
        import gr00t_trt.runtime
        from gr00t_trt.runtime import Backend, OrtBackend, Pipeline, Policy
        import gr00t_trt.runtime.policy, gr00t_trt.runtime.buffers, gr00t_trt.processing.preprocess
        assert "gr00t_trt.model" not in sys.modules, "runtime pulled in the model package"
        print("ok")
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_import_is_lazy():
    result = run("""
        import sys
        import gr00t_trt.runtime
        heavy = [m for m in ("onnxruntime", "onnx", "torch", "tokenizers", "gr00t_trt.runtime.pipeline") if m in sys.modules]
        print(heavy)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
