"""The server's OpenAPI document, true to what it answers.

Every error is ``{"error": "..."}`` (``ErrorBody``). Routes declare the errors their own logic
returns with ``errors(...)``; ``document`` adds what the server adds around every route: 400 when
FastAPI's own validation of parameters or a body fails (we answer 400, never FastAPI's 422),
413 for bodies over the cap, and 401 when a bearer token is required.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from deepline.serve.settings import ServeSettings

REASONS = {
    400: "a request the server cannot read, or inputs the model cannot take (the reason says)",
    401: "missing or wrong bearer token",
    403: "refused: the server does not do this",
    404: "no such model or version",
    405: "not a method of this path (the answer's Allow header lists those)",
    413: "the body is larger than the server's cap",
    415: "a compressed body (Content-Encoding), which the server does not read",
    503: "not ready",
    504: "inference took longer than the server's timeout",
}
OPEN_PATHS = frozenset({"/v2/health/live"})  # answered without a token


class ErrorBody(BaseModel):
    error: str


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """Responses for ``codes``, each an ErrorBody with its reason (a route's ``responses``)."""
    return {code: {"model": ErrorBody, "description": REASONS[code]} for code in codes}


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema with its ``$defs`` put in place: an ``openapi_extra`` request body
    cannot refer to them."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def install(app: FastAPI, settings: ServeSettings) -> None:
    """Serve ``document`` at /openapi.json (built once, on the first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app, settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def document(app: FastAPI, settings: ServeSettings) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["ErrorBody"] = ErrorBody.model_json_schema()
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for path, item in schema["paths"].items():
        for operation in item.values():
            responses = operation["responses"]
            responses.pop("422", None)  # validation errors are answered 400
            added = []
            if operation.get("requestBody") or _validated(operation):
                added.append(400)
            if operation.get("requestBody"):
                added.append(413)
            if settings.token and path not in OPEN_PATHS:
                added.append(401)
            for code in added:
                responses.setdefault(str(code), {"description": REASONS[code], "content": error})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    return schema


def _validated(operation: dict[str, Any]) -> bool:
    """Whether FastAPI checks a parameter beyond "a string" (a number, a bound, a choice)."""
    for parameter in operation.get("parameters", []):
        schema = parameter.get("schema", {})
        if schema.get("type") != "string" or set(schema) - {"type", "title"}:
            return True
    return False
