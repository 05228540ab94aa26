"""Errors a request can cause, answered as ``{"error": "..."}`` JSON.

That shape is also what TensorFlow Serving's REST API and KServe's V2 protocol return, so every
protocol's clients read our errors as their own.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from deepline.errors import InputError


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


async def _http_error(_: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, HTTPException)
    return error_response(err.status_code, str(err.detail))


async def _validation_error(_: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in err.errors()
    )
    return error_response(400, f"invalid request: {problems}")


HANDLERS = {
    ServeError: _serve_error,
    InputError: _input_error,
    HTTPException: _http_error,
    RequestValidationError: _validation_error,
}
