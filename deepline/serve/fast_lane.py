"""The inference routes, found by one regular expression each instead of a walk over every route.

FastAPI matches a request against each route of each included router in turn, with bookkeeping
per candidate: under load that costs more than running a small model. Protocols name their
inference routes (``PROTOCOLS`` meta ``lane``); this middleware, innermost of the server's
own, sends a request for one of them straight to the route's function, with the same
``Request``, the same error handlers and the same answers. Every other request (another
path, method, or a query string the lane does not read) goes to the app unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from deepline.serve.errors import HANDLERS

Call = Callable[[Request, dict[str, Any]], Awaitable[Response]]


@dataclass(frozen=True)
class LaneRoute:
    """A POST route the lane answers: its path as the router declares it (same convertors),
    and the call that answers it from the request and the path's parameters."""

    path: str
    call: Call


class FastLane:
    def __init__(self, app: ASGIApp, routes: Sequence[LaneRoute], owner: Any) -> None:
        self.app = app
        self.owner = owner  # the FastAPI app: routes read ``request.app.state``
        self.routes = []
        for route in routes:
            regex, _, convertors = compile_path(route.path)
            self.routes.append((regex, convertors, route.call))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope["query_string"]:
            path = scope["path"]
            for regex, convertors, call in self.routes:
                match = regex.match(path)
                if match is not None:
                    params = {k: convertors[k].convert(v) for k, v in match.groupdict().items()}
                    return await self._answer(call, params, scope, receive, send)
        await self.app(scope, receive, send)

    async def _answer(
        self, call: Call, params: dict[str, Any], scope: Scope, receive: Receive, send: Send
    ) -> None:
        scope["app"] = self.owner
        scope["path_params"] = params
        request = Request(scope, receive)
        request._body = await _read_body(receive)  # what request.body() returns, read directly
        try:
            response = await call(request, params)
        except Exception as err:
            handler = next((h for kind, h in HANDLERS.items() if isinstance(err, kind)), None)
            if handler is None:
                raise  # as the app would: a 500 from its outermost middleware
            response = await handler(request, err)
        await response(scope, receive, send)


async def _read_body(receive: Receive) -> bytes:
    """The whole request body (the server's body cap, outside, counts it as it comes)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)
