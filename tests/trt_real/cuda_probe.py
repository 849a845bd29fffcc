"""Subprocess side of the cuda-python line tests: one real cuda-python on sys.path, answers in JSON.

Usage: ``python cuda_probe.py LABEL --repo R --cuda-dir C [--cuda-dir C2]``. Prints one JSON object:
what gr00t_trt makes of the real module (layout, doctor rows, probe error), what each no-driver call
does on the real module and on the line's stand-in, the stand-in's conformance, and the cudart
attribute chains gr00t_trt's source uses that the real module lacks.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import warnings
from pathlib import Path

#: calls (with arguments that are valid on a GPU) whose no-driver outcome must match the stand-in's
CALLS = {"cudaGetDeviceCount": (), "cudaDriverGetVersion": (), "cudaRuntimeGetVersion": (), "cudaSetDevice": (0,),
         "cudaGetDeviceProperties": (0,), "cudaMallocHost": (64,), "cudaMalloc": (64,), "cudaHostAlloc": (64, 2),
         "cudaStreamCreateWithFlags": (1,), "cudaEventCreate": (), "cudaFree": (0,), "cudaStreamSynchronize": (0,)}


def outcomes(rt) -> dict:
    """(error code, tuple length) per call, or the exception it raised; versions reported by value."""
    out = {}
    for name, args in CALLS.items():
        try:
            result = getattr(rt, name)(*args)
            out[name] = [int(result[0]), len(result)]
            if name.endswith("GetVersion"):
                out[name].append(int(result[1]))
        except Exception as exc:  # noqa: BLE001 - the outcome is what we compare
            out[name] = f"{type(exc).__name__}: {exc}"
    return out


def call_sites(package: Path, roots) -> list[tuple[str, int, tuple[str, ...], str]]:
    """Every ``cudart.f(...)`` / ``self.rt.f(...)`` call in gr00t_trt: (f, positional count, keywords, where)."""
    sites = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            func, args = node.func, node.args
            if isinstance(func, ast.Name) and func.id == "ask" and args:  # ask(cudart.f, *args)
                func, args = args[0], args[1:]
            if isinstance(func, ast.Attribute) and roots(func.value) == "cudart":
                keywords = tuple(k.arg for k in node.keywords if k.arg)
                sites.append((func.attr, len(args), keywords, f"{path.name}:{node.lineno}"))
    return sites


def incompatible_calls(rt, sites) -> list[str]:
    """Calls whose arguments fit no signature of the real function (its Cython docstring)."""
    from trt_real.conformance import doc_signatures

    problems = []
    for name, positional, keywords, where in sites:
        overloads = doc_signatures(name, getattr(getattr(rt, name, None), "__doc__", None))
        fits = any(sum(not d for _, d in params) <= positional + len(keywords) <= len(params)
                   and all(k in [p for p, _ in params[positional:]] for k in keywords) for params in overloads)
        if not fits:
            problems.append(f"{where}: cudart.{name} with {positional} positional {list(keywords)} fits none of {overloads}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("label")
    parser.add_argument("--repo", required=True)
    parser.add_argument("--cuda-dir", action="append", default=[])
    args = parser.parse_args()
    repo = Path(args.repo)
    sys.path[:0] = [*args.cuda_dir, str(repo), str(repo / "tests")]
    warnings.simplefilter("ignore")  # 12.9's cuda.cudart shim warns that it is deprecated
    from standin import cudart as fake_cudart
    from standin.cudart_lines import module as line_module

    from gr00t_trt.base.errors import Gr00tTrtError
    from gr00t_trt.engines.device import probe_gpu
    from gr00t_trt.runtime.cuda_python import describe, driver_line, load_cudart
    from trt_real.conformance import _root, check_cudart_standin, collect_chains

    def first_contact(rt) -> str:
        """What probe_gpu says as the first call (12.6.x raise "Failed to dlopen" on the first call only)."""
        try:
            probe_gpu(0, rt)
            return "found a GPU"
        except Gr00tTrtError as exc:
            return str(exc)

    rt, fake = load_cudart(), line_module(args.label, driver=0)
    out: dict = {"probe": first_contact(rt), "standin_probe": first_contact(fake)}
    out.update(real_calls=outcomes(rt), standin_calls=outcomes(fake))  # the same sequence on both
    info = describe(rt)
    out["describe"] = {"version": info.version, "layout": info.layout, "runtime": info.runtime, "driver": info.driver}
    out["driver_line"] = driver_line(info)[0]
    out["conformance"] = check_cudart_standin(fake_cudart, rt)
    missing = []
    for chain in sorted(collect_chains(repo / "gr00t_trt")["cudart"]):
        obj = rt
        for part in chain:
            if not hasattr(obj, part):
                missing.append(".".join(chain))
                break
            obj = getattr(obj, part)
    out["missing_chains"] = missing
    sites = call_sites(repo / "gr00t_trt", _root)
    out["call_sites"] = len(sites)
    out["incompatible_calls"] = incompatible_calls(rt, sites)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
