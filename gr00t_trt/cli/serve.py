"""``gr00t-trt serve``: a policy behind Isaac-GR00T's ZeroMQ protocol or openpi's websocket one (logic in
``gr00t_trt.serve``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import app, err_console, flag, friendly
from .commands import BACKEND_HELP, SHARED_THREADS_HELP, THREADS_HELP, thread_options


@app.command()
@friendly
def serve(
    export_dir: Annotated[Path, typer.Argument(help="Export directory to serve.")],
    backend: Annotated[str, typer.Option(help=BACKEND_HELP)] = "auto",
    embodiment: Annotated[str | None, typer.Option(help="Default embodiment (requests may name another).")] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on; 0.0.0.0 exposes the policy to the network.")] = "127.0.0.1",
    protocol: Annotated[str, typer.Option(help="zmq (Isaac-GR00T's PolicyClient) or openpi (openpi-client's "
                                          "WebsocketClientPolicy; needs pip install 'gr00t-trt[serve]').")] = "zmq",
    port: Annotated[int | None, typer.Option(help="TCP port (default: 5555 for zmq as Isaac-GR00T, 8000 for openpi).",
                                             show_default=False)] = None,
    api_token: Annotated[str | None, typer.Option(envvar="GR00T_TRT_API_TOKEN", show_default=False,
                                                  help="Require this token in every request. Prefer the "
                                                  "GR00T_TRT_API_TOKEN environment variable: other users can read a "
                                                  "command-line token with `ps`.")] = None,
    allow_kill: Annotated[bool, flag("--allow-kill", "Let clients stop the server with the kill endpoint.")] = False,
    max_message_mb: Annotated[float, typer.Option(help="Largest request accepted, in MiB.")] = 64.0,
    max_clients: Annotated[int, typer.Option(help="openpi: websocket connections served at once.")] = 8,
    threads: Annotated[int | None, typer.Option(help=THREADS_HELP)] = None,
    shared_threads: Annotated[bool, flag("--shared-threads", SHARED_THREADS_HELP)] = False,
) -> None:
    """Serve a policy over Isaac-GR00T's ZeroMQ protocol (its PolicyClient works unchanged) or openpi's
    websocket protocol (--protocol openpi: openpi-client's WebsocketClientPolicy works unchanged)."""
    from ..base.errors import ServeError
    from ..serve.openpi import DEFAULT_PORT as OPENPI_PORT
    from ..serve.server import DEFAULT_PORT, PROTOCOLS, ServerOptions, configure_logging, run_server

    if protocol not in PROTOCOLS:
        raise ServeError(f"unknown --protocol {protocol!r} — expected one of: {', '.join(PROTOCOLS)}")
    configure_logging()
    port = port if port is not None else OPENPI_PORT if protocol == "openpi" else DEFAULT_PORT
    options = ServerOptions(host=host, port=port, api_token=api_token, allow_kill=allow_kill,
                            max_message_bytes=int(max_message_mb * (1 << 20)), embodiment=embodiment,
                            max_clients=max_clients)
    run_server(export_dir, backend=backend, options=options, protocol=protocol,
               backend_options=thread_options(threads, shared_threads),
               on_ready=lambda server: err_console.print(f"serving {export_dir} on {server.endpoint} — Ctrl-C stops"))
