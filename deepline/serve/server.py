"""Run the app with Uvicorn: in the foreground (``deepline serve``) or on a background thread."""

from __future__ import annotations

import gc
import socket
import threading
import time
from types import TracebackType

import uvicorn
from fastapi import FastAPI

from deepline.errors import DeeplineError
from deepline.serve.settings import ServeSettings, is_loopback


def uvicorn_config(
    app: FastAPI, settings: ServeSettings, port: int | None = None
) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port if port is None else port,
        log_level="warning",
        access_log=False,
        server_header=False,
        # X-Forwarded-For is not trusted (and not parsed per request): put a proxy in front
        # and let it log clients
        proxy_headers=False,
        timeout_keep_alive=30,
        limit_concurrency=1024,
    )


def check_port_free(host: str, port: int) -> None:
    """Raise DeeplineError now, before anything is printed, when ``host:port`` is taken."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            raise DeeplineError(
                f"cannot listen on {host}:{port} ({err.strerror}): pick another --port"
            ) from None


def exposure_warning(settings: ServeSettings) -> str | None:
    """What to tell the user when the address is reachable from other machines."""
    if is_loopback(settings.host):
        return None
    return f"serving on {settings.host}: other machines can reach this server" + (
        "" if settings.token else "; consider --token"
    )


def serve(app: FastAPI, settings: ServeSettings) -> None:
    """Serve until interrupted."""
    freeze_heap()
    uvicorn.Server(uvicorn_config(app, settings)).run()


def freeze_heap() -> None:
    """Keep what is loaded now, which lives as long as the server, out of every garbage
    collection: a full collection of torch's and FastAPI's objects takes ~0.2 s, a p99 spike.
    For a process about to serve, not for a library call (``create_app`` does not do it)."""
    gc.collect()
    gc.freeze()


class BackgroundServer:
    """A real server on 127.0.0.1 and a free port, on a thread (for tests and benchmarks).

    >>> with BackgroundServer(app) as server:                     # doctest: +SKIP
    ...     httpx.get(server.url + "/v2/health/live")
    """

    def __init__(self, app: FastAPI, settings: ServeSettings | None = None) -> None:
        self.settings = settings or app.state.settings
        self.server = uvicorn.Server(uvicorn_config(app, self.settings, port=0))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
