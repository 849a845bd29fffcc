"""Which backends exist, and which one runs a given export on this machine.

Backends are registered by name with the import path of their class, so that naming one never imports
another's heavy dependencies. ``backend="auto"`` asks each candidate, fastest first, whether it can run
*this* export *here* (``Backend.probe``: for TensorRT, engines built for this GPU and TensorRT version
exist and match) instead of guessing from which modules are installed.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

from ..base.errors import BackendError
from ..contract.manifest import Manifest
from .backend import Backend

_REGISTRY: dict[str, str] = {
    "trt": "gr00t_trt.runtime.trt_backend:TrtBackend",
    "ort": "gr00t_trt.runtime.ort_backend:OrtBackend",
}
#: what "auto" tries, in order
AUTO_ORDER: tuple[str, ...] = ("trt", "ort")


def register_backend(name: str, target: str) -> None:
    """Make ``Policy.load(..., backend=name)`` build the class at ``"package.module:Class"``."""
    _REGISTRY[name] = target


def backend_names() -> tuple[str, ...]:
    return ("auto", *sorted(_REGISTRY))


def backend_class(name: str) -> type[Backend]:
    """The class registered as ``name``; a one-line error when unknown or not shipped in this version."""
    if name not in _REGISTRY:
        raise BackendError(f"unknown backend {name!r} — expected one of: {', '.join(backend_names())}")
    module_name, _, class_name = _REGISTRY[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise BackendError(f"the {name} backend is not part of this version of gr00t-trt — use --backend ort") from None
        raise
    return getattr(module, class_name)


def make_backend(backend: str | Backend, folder: str | Path, manifest: Manifest, **options: Any) -> Backend:
    """A Backend for this export: the given instance, the named one (its ``probe`` must pass), or for
    "auto" the first of ``AUTO_ORDER`` that can run it. ``options`` go to the backend's constructor
    (with "auto", each candidate takes the options it knows)."""
    if isinstance(backend, Backend):
        return backend
    folder = Path(folder)
    if backend != "auto":
        cls = backend_class(backend)
        _check_options(backend, cls, options)
        reason = cls.probe(folder, manifest, **options)
        if reason is not None:
            raise BackendError(f"the {backend} backend cannot run {folder}: {reason}")
        return cls(**options)
    reasons = []
    for name in AUTO_ORDER:
        try:
            cls = backend_class(name)
        except BackendError as exc:
            reasons.append(f"{name}: {exc}")
            continue
        accepted = _accepted(cls)
        mine = {k: v for k, v in options.items() if k in accepted}
        reason = cls.probe(folder, manifest, **mine)
        if reason is None:
            return cls(**mine)
        reasons.append(f"{name}: {reason}")
    raise BackendError(f"no backend can run {folder} here — {'; '.join(reasons)}")


def _accepted(cls: type[Backend]) -> set[str]:
    return {p.name for p in inspect.signature(cls.__init__).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _check_options(name: str, cls: type[Backend], options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - _accepted(cls))
    if unknown:
        raise BackendError(
            f"the {name} backend has no option {', '.join(unknown)} — it takes: {', '.join(sorted(_accepted(cls))) or 'none'}"
        )
