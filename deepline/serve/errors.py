"""Errors a request can cause, answered as ``{"error": "..."}`` JSON.

That shape is also what TensorFlow Serving's REST API and KServe's V2 protocol return, so every
protocol's clients read our errors as their own.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match, Route

from deepline.errors import InputError, validation_problems


class ServeError(Exception):
    """A request the server refuses, with the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class BadRequest(ServeError):
    def __init__(self, message: str) -> None:
        super().__init__(400, message)


class NotFound(ServeError):
    def __init__(self, message: str) -> None:
        super().__init__(404, message)


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _serve_error(_: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, ServeError)
    return error_response(err.status, err.message)


async def _input_error(_: Request, err: Exception) -> JSONResponse:
    return error_response(400, str(err))


async def _http_error(request: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, HTTPException)
    response = error_response(err.status_code, str(err.detail))
    response.headers.update(err.headers or {})
    if err.status_code == 405:  # every method some route takes at this path, not only the first
        response.headers["Allow"] = ", ".join(allowed_methods(request))
    return response


def allowed_methods(request: Request) -> list[str]:
    """The methods of every route whose path matches the request's."""
    from deepline.registry import PROTOCOLS

    routes = [*request.app.router.routes]
    routes += [route for name in PROTOCOLS.names() for route in PROTOCOLS.get(name).routes]
    methods: set[str] = set()
    for route in routes:
        if not isinstance(route, Route):  # included routers, mounts: their routes are listed
            continue
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match != Match.NONE:
            methods |= set(route.methods or ())
    return sorted(methods)


async def _validation_error(_: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, RequestValidationError)
    return error_response(400, f"invalid request: {validation_problems(list(err.errors()))}")


HANDLERS = {
    ServeError: _serve_error,
    InputError: _input_error,
    HTTPException: _http_error,
    RequestValidationError: _validation_error,
}
