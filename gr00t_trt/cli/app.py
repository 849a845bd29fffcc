"""The typer application, its global options and the one-line error handling every command shares."""

from __future__ import annotations

import functools
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from .. import __version__
from ..base.errors import Gr00tTrtError
from .numbers import check_numeric_options


class _BareFlags:
    """typer 0.29 prints a value type after every option, ``<bool>`` too, so ``--synthetic`` read as if it took a
    value (``--synthetic true`` → "unexpected extra argument"); a flag shows no type, and a flag that is off
    unless given shows no ``[default: no-flag]``."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False):
                param.metavar = "" if param.metavar is None else param.metavar
                if param.default is False:
                    param.show_default = False
        return params


class _Command(_BareFlags, TyperCommand):
    pass


class _Group(_BareFlags, TyperGroup):
    pass


class _App(typer.Typer):
    """Every command of the app is a ``_Command``."""

    def command(self, *args, **kwargs):
        kwargs.setdefault("cls", _Command)
        return super().command(*args, **kwargs)


def flag(name: str, help: str) -> typer.Option:  # noqa: A002 - typer's own name
    """A boolean option that is only ever switched on (``--force``): no ``--no-force`` twin."""
    return typer.Option(name, help=help)


app = _App(
    name="gr00t-trt",
    cls=_Group,
    help="Export, verify, run and benchmark NVIDIA GR00T N1.6 and N1.7 policies: ONNX graphs from a checkpoint, "
    "ONNX Runtime as the embedded default, TensorRT engines on Jetson Thor/Orin and RTX GPUs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)
_state = {"debug": False}
#: modules of the `export` extra: missing ones mean a runtime-only install (see pyproject.toml)
EXPORT_MODULES = ("torch", "transformers", "safetensors", "huggingface_hub", "onnx", "onnxscript")


def _version(value: bool) -> None:
    if value:
        console.print(f"gr00t-trt {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    version: Annotated[bool | None, typer.Option("--version", callback=_version, is_eager=True,
                                                 help="Print the version and exit.")] = None,
) -> None:
    _state["debug"] = debug


def friendly(fn):
    """Turn library errors into one red line and exit code 1 (``--debug`` shows the traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            check_numeric_options(kwargs)
            return fn(*args, **kwargs)
        except Gr00tTrtError as exc:
            if _state["debug"]:
                raise
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except ModuleNotFoundError as exc:  # the runtime-only install lacks the export tooling
            if _state["debug"] or (exc.name or "").split(".")[0] not in EXPORT_MODULES:
                raise
            err_console.print(f"[bold red]error:[/] {fn.__name__} needs the Python module '{exc.name}', which is not "
                              "installed — install the export tooling with: pip install 'gr00t-trt\\[export]'",
                              highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


def main() -> None:  # pragma: no cover
    app(prog_name="gr00t-trt")
