"""The numeric CLI options' valid ranges, declared once and checked for every command before it runs.

typer parses ``--port 70000``, ``--workspace-gb nan`` or ``--opt-level -7`` happily; ZeroMQ then wraps the
port, TensorRT gets a negative pool and ``build.sh`` says ``memPoolSize=workspace:-1024M``. Each option
named here is checked by ``friendly`` (whichever command takes it) and refused in one line.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from ..base.errors import Gr00tTrtError


class Range(NamedTuple):
    low: float
    high: float
    what: str
    low_open: bool = False  # ``low`` itself is refused (a positive float)


#: parameter name (as typer passes it) -> its range; None values (option not given) are not checked
NUMERIC_OPTIONS: dict[str, Range] = {
    "port": Range(1, 65535, "a TCP port"),
    "max_message_mb": Range(0, 4096, "a size in MiB", low_open=True),
    "workspace_gb": Range(0, 1024, "a size in GiB", low_open=True),
    "opt_level": Range(0, 5, "a TensorRT builder optimisation level"),
}
#: --steps, --max-batch and --calib-count are the library's to check (ExportOptions), --iters and the like
#: BenchOptions.check's: both are used without the CLI too


def check_numeric_options(values: dict[str, Any]) -> None:
    """Refuse the first out-of-range numeric option among a command's arguments, in one line."""
    for name, bounds in NUMERIC_OPTIONS.items():
        value = values.get(name)
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        option = "--" + name.replace("_", "-")
        low = f"above {bounds.low:g}" if bounds.low_open else f"at least {bounds.low:g}"
        if not math.isfinite(value) or value > bounds.high or value < bounds.low or (bounds.low_open and value == bounds.low):
            raise Gr00tTrtError(f"{option} {value} is out of range — expected {bounds.what}, {low} and at most "
                                f"{bounds.high:g}")
