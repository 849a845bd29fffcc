"""Subprocess side of the real-module harness: load one real TensorRT (and/or cuda-python), answer in JSON.

Usage: ``python probe.py SECTION[,SECTION...] --repo R [--trt-dir D --stub-dir S] [--cuda-dir C ...] --payload F``.
The last stdout line is a JSON object with one key per section.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import json
import sys
import traceback
from pathlib import Path


def load_real_trt(trt_dir: str, stub_dir: str):
    """Preload the stub sonames, import the genuine bindings and make them ``tensorrt``."""
    for so in sorted(Path(stub_dir).glob("lib*.so.*")):
        ctypes.CDLL(str(so), mode=ctypes.RTLD_GLOBAL)
    sys.path.insert(0, trt_dir)
    import tensorrt_bindings

    sys.modules["tensorrt"] = tensorrt_bindings
    return tensorrt_bindings


def load_standin(repo: Path):
    """The in-repo stand-in modules, imported by path (tests is not a package on sys.path here)."""
    sys.path.insert(0, str(repo / "tests"))
    from standin import cudart as fake_cudart
    from standin import tensorrt as fake_trt

    return fake_trt, fake_cudart


def section_basics(trt, cudart, payload, repo):
    out = {}
    if trt is not None:
        out["version"] = trt.__version__
        for factory in ("Builder", "Runtime"):
            try:
                getattr(trt, factory)(trt.Logger(trt.Logger.WARNING))
                out[factory] = "created"
            except Exception as exc:  # noqa: BLE001 - we report what the real module raises
                out[factory] = f"{type(exc).__name__}: {exc}"
    if cudart is not None:
        err, count = cudart.cudaGetDeviceCount()
        out["cudaGetDeviceCount"] = [err.name, int(err), count]
        err, ptr = cudart.cudaMallocHost(64)
        out["cudaMallocHost"] = [err.name, int(err)]
    return out


def section_resolve(trt, cudart, payload, repo):
    """Which of the attribute chains gr00t_trt reaches through ``trt``/``cudart`` resolve here."""
    out = {}
    for key, module in (("trt", trt), ("cudart", cudart)):
        if module is None:
            continue
        missing = []
        for chain in payload.get(key, []):
            obj = module
            for part in chain:
                if not hasattr(obj, part):
                    missing.append(".".join(chain))
                    break
                obj = getattr(obj, part)
        out[key] = missing
    return out


def section_conformance(trt, cudart, payload, repo):
    sys.path.insert(0, str(repo / "tests"))
    from trt_real.conformance import check_cudart_standin, check_trt_standin

    fake_trt, fake_cudart = load_standin(repo)
    if trt is not None:
        fake_trt.STATE.trt_version = trt.__version__
    out = {}
    if trt is not None:
        out["trt"] = check_trt_standin(fake_trt, trt)
    if cudart is not None:
        out["cudart"] = check_cudart_standin(fake_cudart, cudart)
    return out


def section_cli(trt, cudart, payload, repo):
    """What build and doctor say on this machine with the real module as ``tensorrt``."""
    sys.path.insert(0, str(repo))
    from gr00t_trt.base.errors import Gr00tTrtError
    from gr00t_trt.engines.build import create_builder, make_logger
    from gr00t_trt.workflows.doctor import run_doctor

    out = {}
    try:
        logger = make_logger(trt)  # our ILogger subclass must construct on the real pybind11 class
        logger.log(trt.ILogger.Severity.ERROR, "probe")
        out["logger_errors"] = list(logger.errors)
        create_builder(trt, logger)
        out["create_builder"] = "created"
    except Gr00tTrtError as exc:
        out["create_builder"] = str(exc)
    report = run_doctor()
    out["doctor"] = {row.name: row.value for row in report.rows}
    if payload.get("export_dir"):
        from gr00t_trt.engines.build import BuildOptions, build_engines

        try:
            build_engines(payload["export_dir"], BuildOptions(out=Path(payload["out_dir"])))
            out["build"] = "built"
        except Gr00tTrtError as exc:
            out["build"] = str(exc)
    return out


SECTIONS = {"basics": section_basics, "resolve": section_resolve, "conformance": section_conformance, "cli": section_cli}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("sections")
    parser.add_argument("--repo", required=True)
    parser.add_argument("--trt-dir")
    parser.add_argument("--stub-dir")
    parser.add_argument("--cuda-dir", action="append", default=[])
    parser.add_argument("--payload")
    args = parser.parse_args()
    payload = json.loads(Path(args.payload).read_text()) if args.payload else {}
    trt = load_real_trt(args.trt_dir, args.stub_dir) if args.trt_dir else None
    cudart = None
    if args.cuda_dir:
        sys.path[:0] = args.cuda_dir
        from cuda.bindings import runtime as cudart
    elif importlib.util.find_spec("cuda") is not None:  # never let an installed cuda-python leak in
        sys.modules["cuda"] = None  # type: ignore[assignment]
    result = {}
    for name in args.sections.split(","):
        try:
            result[name] = SECTIONS[name](trt, cudart, payload, Path(args.repo))
        except Exception:  # noqa: BLE001 - reported to the parent test
            result[name] = {"error": traceback.format_exc()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
