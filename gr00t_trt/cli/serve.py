"""``gr00t-trt serve``: a policy behind Isaac-GR00T's ZeroMQ protocol (logic in ``gr00t_trt.serve``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import app, err_console, flag, friendly
from .commands import BACKEND_HELP


@app.command()
@friendly
def serve(
    export_dir: Annotated[Path, typer.Argument(help="Export directory to serve.")],
    backend: Annotated[str, typer.Option(help=BACKEND_HELP)] = "auto",
    embodiment: Annotated[str | None, typer.Option(help="Default embodiment (requests may name another).")] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on; 0.0.0.0 exposes the policy to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (Isaac-GR00T's default is 5555).")] = 5555,
    api_token: Annotated[str | None, typer.Option(envvar="GR00T_TRT_API_TOKEN", show_default=False,
                                                  help="Require this token in every request. Prefer the "
                                                  "GR00T_TRT_API_TOKEN environment variable: other users can read a "
                                                  "command-line token with `ps`.")] = None,
    allow_kill: Annotated[bool, flag("--allow-kill", "Let clients stop the server with the kill endpoint.")] = False,
    max_message_mb: Annotated[float, typer.Option(help="Largest request accepted, in MiB.")] = 64.0,
) -> None:
    """Serve a policy over Isaac-GR00T's ZeroMQ protocol (its PolicyClient works unchanged)."""
    from ..serve.server import ServerOptions, configure_logging, run_server

    configure_logging()
    options = ServerOptions(host=host, port=port, api_token=api_token, allow_kill=allow_kill,
                            max_message_bytes=int(max_message_mb * (1 << 20)), embodiment=embodiment)
    run_server(export_dir, backend=backend, options=options,
               on_ready=lambda server: err_console.print(f"serving {export_dir} on {server.endpoint} — Ctrl-C stops"))
