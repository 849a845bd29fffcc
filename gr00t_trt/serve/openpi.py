"""openpi's websocket policy protocol over the same ``ServingCore`` as the ZeroMQ server.

What openpi's ``WebsocketClientPolicy`` (package ``openpi-client``) expects, and what this adapter does:
- the server sends its metadata (a msgpack map) as the first frame after the handshake — here the same
  description a ZeroMQ ``ping`` answers;
- then each binary frame is one observation, msgpack with numpy arrays as
  ``{b"__ndarray__": True, b"data": raw bytes, b"dtype": dtype.str, b"shape": [...]}`` (numpy scalars as
  ``{b"__npgeneric__": True, b"data": value, b"dtype": ...}``), answered by one binary frame: the action
  map plus ``server_timing`` (``infer_ms``; ``prev_total_ms``, the previous request's round trip);
- a failure is answered by a text frame holding the message (the client raises it); unlike openpi's own
  server the connection stays open and the server keeps serving;
- ``GET /healthz`` answers ``200 OK``;
- the client's ``api_key`` arrives as the header ``Authorization: Api-Key <key>``: with a token set, a
  handshake without the right one is refused with 401 before any frame is read.

The observation is gr00t-trt's (nested or flat Isaac-GR00T keys); an optional ``"options"`` entry carries
``embodiment``/``seed``/``noise`` as a ZeroMQ request's options do. Arrays are rebuilt from raw bytes with
their size checked against dtype and shape; object, void and complex dtypes are refused, and the frame is
walked within the same bounds as a ZeroMQ request before anything is built.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from .. import __version__
from ..base.errors import Gr00tTrtError, ServeError, require
from .core import ServerOptions, ServingCore, _stop_on_signals, log, warn_if_open
from .openpi_client import API_KEY_PREFIX, DEFAULT_PORT, pack, unpack


# ------------------------------------------------------------------------------------------ the server
class OpenpiServer:
    """Serves one ``Policy`` with openpi's websocket protocol; ``serve()`` blocks until ``stop()``.

    One thread per connection (at most ``options.max_clients``; a connection beyond is closed at once with
    code 1013, try again later); requests of different connections run concurrently up to the core's lock.
    """

    def __init__(self, policy: Any, options: ServerOptions = ServerOptions(port=DEFAULT_PORT),
                 core: ServingCore | None = None) -> None:
        require("websockets", "gr00t-trt[serve]", "The openpi websocket server")
        from websockets.sync.server import serve

        self.core = core or ServingCore(policy, options)
        self.policy, self.options = policy, options
        self._clients = 0
        self._clients_lock = threading.Lock()
        self._stopped = threading.Event()
        self._serving: threading.Thread | None = None
        self._closer: threading.Thread | None = None
        try:
            self._server = serve(self._connection, options.host, options.port, process_request=self._http,
                                 compression=None, max_size=2 * options.max_message_bytes, server_header=None)
        except OSError as exc:
            raise ServeError(f"cannot listen on {options.host}:{options.port} — {exc} — pick another --port or --host"
                             ) from None
        warn_if_open(options, self.endpoint)

    @property
    def port(self) -> int:
        return self._server.socket.getsockname()[1]

    @property
    def endpoint(self) -> str:
        host = self.options.host
        return f"ws://{f'[{host}]' if ':' in host else host}:{self.port}"

    def serve(self) -> None:
        log.info("gr00t-trt %s serving %s on %s (openpi protocol, backend %s, token %s)", __version__,
                 self.policy.folder, self.endpoint, self.policy.pipeline.backend.name,
                 "required" if self.options.api_token else "none")
        self._serving = threading.current_thread()
        self._server.serve_forever()
        if self._closer is not None:
            self._closer.join()  # open connections are closed (1001) before serve() returns
        log.info("server stopped")

    def stop(self) -> None:
        """Stop accepting, close open connections, end ``serve()``. From a signal handler on the serving
        thread the shutdown runs on a helper thread: it waits for ``serve_forever`` to return."""
        self._stopped.set()
        if threading.current_thread() is self._serving:
            self._closer = threading.Thread(target=self._server.shutdown, name="gr00t-trt-openpi-stop", daemon=True)
            self._closer.start()
        else:
            self._server.shutdown()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def close(self) -> None:
        self._server.socket.close()

    def __enter__(self) -> OpenpiServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ handshake
    def _http(self, connection: Any, request: Any) -> Any:
        """Before the websocket opens: health check, token, connection limit (None: go ahead)."""
        if request.path == "/healthz":
            return connection.respond(HTTPStatus.OK, "OK\n")
        header = request.headers.get("Authorization") or ""
        given = header[len(API_KEY_PREFIX):] if header.startswith(API_KEY_PREFIX) else None
        try:
            self.core.check_token(given, hint="pass the server's token as the client's api_key "
                                              "(header Authorization: Api-Key <token>)")
        except ServeError as exc:
            log.info("refused a connection from %s: %s", connection.remote_address, exc)
            return connection.respond(HTTPStatus.UNAUTHORIZED, f"{exc}\n")
        return None

    def _connection(self, websocket: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        with self._clients_lock:
            full = self._clients >= self.options.max_clients
            self._clients += not full
        if full:  # 1013: try again later
            websocket.close(1013, f"too many clients — this server serves {self.options.max_clients} at once")
            return
        try:
            websocket.send(pack(self.core.describe()))
            previous: float | None = None
            for message in websocket:
                start = time.perf_counter()
                websocket.send(self.handle(message, previous))
                previous = (time.perf_counter() - start) * 1e3
        except ConnectionClosed:
            pass
        finally:
            with self._clients_lock:
                self._clients -= 1

    # ------------------------------------------------------------------ one request
    def handle(self, message: bytes | str, prev_total_ms: float | None = None) -> bytes | str:
        """The reply frame to one request frame; never raises (every failure is a text frame)."""
        start = time.perf_counter()
        try:
            reply, status = pack(self._infer(message, prev_total_ms)), "ok"
        except Gr00tTrtError as exc:
            reply, status = str(exc), f"error: {exc}"
        except Exception as exc:  # a bug must not take the connection down; the client still gets an answer
            log.exception("internal error while serving an openpi request")
            reply = f"internal server error — {type(exc).__name__}: {exc}"
            status = f"error: {reply}"
        log.info("infer %s %.1f ms (%d B in, %d B out)", status[:200], (time.perf_counter() - start) * 1e3,
                 len(message), len(reply))
        return reply

    def _infer(self, message: bytes | str, prev_total_ms: float | None) -> dict[str, Any]:
        if isinstance(message, str):
            raise ServeError("malformed request — expected a binary msgpack frame, got a text frame")
        limit = self.options.max_message_bytes
        if len(message) > limit:
            raise ServeError(f"message too large — expected at most {limit} bytes, got {len(message)} — "
                             "send fewer or smaller images, or start the server with a larger --max-message-mb")
        start = time.perf_counter()
        obs = unpack(message, max_objects=self.options.max_objects,
                     deadline=time.monotonic() + self.options.decode_seconds)
        if not isinstance(obs, dict):
            raise ServeError(f"malformed request — expected the observation map, got {type(obs).__name__}")
        options = obs.pop("options", None)
        action, info = self.core.get_action(obs, options, where="the observation")
        timing = {"infer_ms": (time.perf_counter() - start) * 1e3}
        if prev_total_ms is not None:
            timing["prev_total_ms"] = prev_total_ms
        return {**action, "server_timing": timing, "policy_timing": info["timings_ms"], "info": info}


def run_openpi_server(policy: Any, options: ServerOptions,
                      on_ready: Callable[[OpenpiServer], None] | None = None) -> None:
    """Serve ``policy`` until SIGINT/SIGTERM (the caller owns the policy)."""
    with OpenpiServer(policy, options) as server:
        if on_ready is not None:
            on_ready(server)
        with _stop_on_signals(server):
            server.serve()
