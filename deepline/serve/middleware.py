"""ASGI middleware: request body cap, bearer token, and per-request metrics."""

from __future__ import annotations

import hmac
import json
import time
from functools import cache, lru_cache
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deepline.registry import PROTOCOLS
from deepline.serve.batching import Arrivals
from deepline.serve.metrics import ServerMetrics

OPEN_PATHS = frozenset({"/v2/health/live"})  # liveness answers without a token


async def _send_error(send: Send, status: int, message: str, **headers: str) -> None:
    body = json.dumps({"error": message}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Answers 413 when a request body (all inputs together) is over ``max_bytes``: at once when
    Content-Length says so, otherwise as soon as the streamed body passes the cap."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        message = f"the request body is over the limit of {self.max_bytes} bytes"
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await _send_error(send, 413, message)
        if length is not None:  # the HTTP parser reads exactly that many bytes: nothing to count
            return await self.app(scope, receive, send)
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return msg

        async def tracked(msg: Message) -> None:
            nonlocal started
            started = started or msg["type"] == "http.response.start"
            await send(msg)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge:
            if not started:
                await _send_error(send, 413, message)


class BearerToken:
    """Every route but liveness needs ``Authorization: Bearer TOKEN`` (the web page may take
    ``?token=`` instead, since a browser cannot send headers when it opens a page)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        scheme, _, given = dict(scope["headers"]).get(b"authorization", b"").partition(b" ")
        ok = scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.token)
        if not ok and scope["path"] == "/":
            query = dict(
                part.split(b"=", 1) for part in scope["query_string"].split(b"&") if b"=" in part
            )
            ok = hmac.compare_digest(query.get(b"token", b""), self.token)
        if not ok:
            return await _send_error(
                send, 401, "missing or wrong bearer token", **{"www-authenticate": "Bearer"}
            )
        await self.app(scope, receive, send)


@lru_cache(maxsize=4096)
def protocol_of(path: str) -> str:
    """The registered protocol with the longest prefix of ``path`` ("/" only for "/")."""
    for prefix, name in _prefixes():
        if path.startswith(prefix) if prefix != "/" else path == "/":
            return name
    return "other"


@cache
def _prefixes() -> list[tuple[str, str]]:
    """(prefix, protocol), longest prefix first (read once: protocols register at import)."""
    pairs = [(p, n) for n in PROTOCOLS.names() for p in PROTOCOLS.meta(n)["prefixes"]]
    return sorted(pairs, key=lambda pair: -len(pair[0]))


class RequestMetrics:
    """Counts every answered request and its latency, and the requests in flight (for the
    batchers). Routes name the model they served in
    ``request.state.model`` as ``(name, version)``; other requests count as model ``-``."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics, arrivals: Arrivals) -> None:
        self.app = app
        self.metrics = metrics
        self.arrivals = arrivals

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/metrics":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500
        scope.setdefault("state", {})

        async def tracked(msg: Message) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = msg["status"]
            await send(msg)

        self.arrivals.in_flight += 1
        try:
            await self.app(scope, receive, tracked)
        finally:
            self.arrivals.in_flight -= 1
            name, version = _model_labels(scope["state"])
            self.metrics.record_request(
                name, version, protocol_of(scope["path"]), status, time.perf_counter() - start
            )


def _model_labels(state: dict[str, Any]) -> tuple[str, str]:
    model = state.get("model")
    return (str(model[0]), str(model[1])) if model else ("-", "-")
