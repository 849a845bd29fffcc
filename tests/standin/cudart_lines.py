"""The cudart stand-in as each cuda-python line presents it: import layout, versions, and no/old driver.

Built on ``standin.cudart`` (the same functions when the driver can run the line). What differs per line,
as the real wheels do on a machine without a GPU (tests/trt_real/test_cuda_python_lines.py checks it):

* 12.6.0: only ``cuda.cudart``; 12.6.2.post1 and 12.9: both layouts; 13.x: only ``cuda.bindings.runtime``.
* no driver library: 12.6.x *raise* ``RuntimeError("Failed to dlopen libcuda.so.1")`` on the first call
  and ``Function "cuInit" not found`` after; 12.9 and 13.x return ``cudaErrorInsufficientDriver`` (35).
* a driver older than the line (13.x on a CUDA 12 driver): every call returns 35, the versions still answer.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType

from . import cudart, install


@dataclass(frozen=True)
class Line:
    version: str  # package version, as ``cuda.bindings.__version__`` (``cuda.__version__`` on 12.6.0)
    runtime: int  # cudaRuntimeGetVersion
    layouts: tuple[str, ...]  # importable runtime modules
    raises_without_driver: bool  # 12.6.x: RuntimeError instead of error 35


LINES = {
    "12.6.0": Line("12.6.0", 12060, ("cuda.cudart",), True),
    "12.6.2": Line("12.6.2.post1", 12060, ("cuda.bindings.runtime", "cuda.cudart"), True),
    "12.9": Line("12.9.0", 12090, ("cuda.bindings.runtime", "cuda.cudart"), False),
    "13.4": Line("13.4.4", 13040, ("cuda.bindings.runtime",), False),
}
#: calls answered without a driver (all lines)
DRIVERLESS = ("cudaRuntimeGetVersion",)
#: calls that return only the error (``(err,)``); every other call returns ``(err, value)``
ERROR_ONLY = {"cudaSetDevice", "cudaGetLastError", "cudaFree", "cudaFreeHost", "cudaMemcpyAsync", "cudaMemcpy",
              "cudaStreamDestroy", "cudaStreamSynchronize", "cudaEventRecord", "cudaEventSynchronize",
              "cudaEventDestroy", "cudaStreamBeginCapture", "cudaGraphLaunch", "cudaGraphDestroy",
              "cudaGraphExecDestroy"}
#: 12.6.x without libcuda: the driver function named in "Function ... not found" (else cuInit)
DRIVER_ENTRY = {"cudaDriverGetVersion": "cuDriverGetVersion", "cudaDeviceGetAttribute": "cuDeviceGetAttribute"}
INSUFFICIENT_DRIVER = cudart.cudaError_t.cudaErrorInsufficientDriver


def _functions() -> dict[str, object]:
    return {k: v for k, v in vars(cudart).items() if k.startswith("cuda") and callable(v) and not isinstance(v, type)}


def module(label: str, driver: int) -> ModuleType:
    """The runtime module of cuda-python ``label`` talking to a driver that supports CUDA ``driver``
    (``1000 * major + 10 * minor``; 0 = no ``libcuda.so.1``)."""
    line = LINES[label]
    rt = ModuleType("cudart_line")
    rt.__dict__.update({k: v for k, v in vars(cudart).items() if not k.startswith("__")})
    rt.cudaRuntimeGetVersion = lambda: (cudart._ok, line.runtime)
    rt.cudaDriverGetVersion = lambda: (cudart._ok, driver)
    if driver and driver // 1000 >= line.runtime // 1000:
        return rt
    dlopened = [False]

    def refusing(name: str):
        def refuse(*args, **kwargs):
            if line.raises_without_driver and not driver:
                if not dlopened[0]:
                    dlopened[0] = True
                    raise RuntimeError("Failed to dlopen libcuda.so.1")
                raise RuntimeError(f'Function "{DRIVER_ENTRY.get(name, "cuInit")}" not found')
            return (INSUFFICIENT_DRIVER,) if name in ERROR_ONLY else (INSUFFICIENT_DRIVER, None)

        refuse.__name__ = name
        return refuse

    for name in _functions():
        if name not in DRIVERLESS and not (name == "cudaDriverGetVersion" and driver):
            setattr(rt, name, refusing(name))
    if not driver and not line.raises_without_driver:
        rt.cudaDriverGetVersion = lambda: (cudart._ok, 0)
    return rt


@contextmanager
def install_line(label: str, driver: int = 13000):
    """``standin.install()`` with cuda-python ``label``'s layout(s) and behaviour in ``sys.modules``."""
    line = LINES[label]
    rt = module(label, driver)
    with install() as state:
        names = ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart")
        saved = {name: sys.modules.get(name) for name in names}
        cuda = ModuleType("cuda")
        cuda.__path__ = []  # a namespace package: "from cuda import cudart" needs the attribute, not a file
        modules: dict[str, ModuleType | None] = {"cuda": cuda, "cuda.bindings": None, "cuda.bindings.runtime": None,
                                                 "cuda.cudart": None}
        if "cuda.bindings.runtime" in line.layouts:
            bindings = ModuleType("cuda.bindings")
            bindings.__version__ = line.version  # type: ignore[attr-defined]
            bindings.runtime = rt  # type: ignore[attr-defined]
            cuda.bindings = bindings  # type: ignore[attr-defined]
            modules.update({"cuda.bindings": bindings, "cuda.bindings.runtime": rt})
        if "cuda.cudart" in line.layouts:
            cuda.cudart = rt  # type: ignore[attr-defined]
            modules["cuda.cudart"] = rt
            if "cuda.bindings.runtime" not in line.layouts:
                cuda.__version__ = line.version  # type: ignore[attr-defined]
        sys.modules.update(modules)  # None: "import cuda.bindings" is an ImportError, as on 12.6.0
        try:
            yield state
        finally:
            for name, mod in saved.items():
                if mod is None:
                    sys.modules.pop(name, None)
                else:
                    sys.modules[name] = mod
