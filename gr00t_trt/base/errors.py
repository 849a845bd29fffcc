"""One exception family for gr00t-trt.

Messages follow one shape: what failed — expected X, got Y — hint. The CLI prints the message on one
line and exits non-zero (``--debug`` shows the traceback).
"""

from __future__ import annotations


class Gr00tTrtError(Exception):
    """Base class of every error gr00t-trt raises on purpose."""


class CheckpointError(Gr00tTrtError):
    """A checkpoint folder, its config or its tensors are missing, malformed or inconsistent."""


class ConfigError(CheckpointError):
    """config.json (or the built-in backbone values) cannot describe a model we support."""


class TokenizerError(Gr00tTrtError):
    """The tokenizer cannot be found or disagrees with the checkpoint's special-token ids or size."""


class ObservationError(Gr00tTrtError):
    """An observation dict has wrong keys, shapes, dtypes or values."""


class NonFiniteActionError(Gr00tTrtError):
    """The model or decoding produced NaN/inf actions; they are never handed to a robot."""


class EmbodimentError(Gr00tTrtError):
    """An embodiment tag is unknown to the checkpoint or export, or lacks statistics."""


class ExportError(Gr00tTrtError):
    """Exporting a graph or writing the export directory failed."""


class ManifestError(Gr00tTrtError):
    """An export directory's manifest is missing, of another format, or its files do not match."""


class BackendError(Gr00tTrtError):
    """A runtime backend cannot be created or cannot run a graph."""


class EngineError(Gr00tTrtError):
    """A TensorRT engine cannot be built, audited, reused or loaded (wrong GPU, TensorRT version, plan)."""


class MissingDependencyError(Gr00tTrtError):
    """An optional dependency is needed for this operation but is not installed."""


class VerificationError(Gr00tTrtError):
    """A parity check could not be run (not: a check ran and failed a threshold)."""


class ServeError(Gr00tTrtError):
    """A policy-server message is malformed or refused, or the server answered with an error."""


class RunnerError(Gr00tTrtError):
    """The robot-side chunk runner was misconfigured, stopped, or its background inference failed."""


def require(module: str, install: str, purpose: str):
    """Import an optional heavy dependency or fail with the pip command that provides it.

    ``install`` is what to pass to pip: an extra such as ``"gr00t-trt[trt]"`` or a package name."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            f"{purpose} needs the Python module '{module}', which is not installed — "
            f"install it with: pip install '{install}'"
        ) from exc
