"""deepline's own API: friendly JSON (and multipart image upload) in, readable answers out.

``POST /predict/{name}``  ``{"inputs": [...], "top_k": 3}`` where each input is an image as
``{"b64": "<PNG/JPEG bytes in base64>"}``, numbers (pixels in [0, 1] or 0..255, a sequence, a
row of features), an object of named features, or a text; or ``multipart/form-data`` with one
or more ``file`` parts. Answers are the task's: classes with probabilities, values per target.
``POST /generate/{name}``  ``{"prompt": "...", "max_tokens": 200}`` for language models, or
``{"seed": 3, "class": "7", "count": 4}`` for image generators (PNGs, one per seed).
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deepline.errors import validation_problems
from deepline.registry import PROTOCOLS
from deepline.serve.dataplane import MAX_INPUTS, GenerateRequest, ImageRequest, plane
from deepline.serve.errors import BadRequest, NotFound
from deepline.serve.fast_lane import LaneRoute
from deepline.serve.openapi import body_schema, errors

Cell = float | str | None  # a named feature's or a table column's value (None: missing)


class Image64(BaseModel):
    model_config = ConfigDict(extra="forbid")
    b64: str = Field(description="an encoded image (PNG, JPEG, ...) in base64")


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: list[Image64 | str | list[Any] | dict[str, Cell | list[Cell]]] = Field(
        min_length=1,
        max_length=MAX_INPUTS,
        description="one per example: images as {'b64': ...} or nested lists of pixels, "
        "sequences or rows of numbers, objects of named features or table columns, texts, "
        "or a recommender's {'user': ...} and/or {'history': [item ids]}",
    )
    top_k: int | None = Field(None, ge=1, le=1000, description="answers per input")


class PredictResponse(BaseModel):
    model: str
    version: int
    predictions: list[Any] = Field(description="one answer per input, as the task gives it")
    latency_ms: float


class GenerateResponse(BaseModel):
    model: str
    version: int
    text: str
    latency_ms: float


class GeneratedImage(BaseModel):
    seed: int
    class_: str | int | None = Field(None, alias="class")
    png: str = Field(description="the image, a PNG in base64")
    size: list[int] = Field(description="its height and width")


class ImagesResponse(BaseModel):
    model: str
    version: int
    images: list[GeneratedImage]
    latency_ms: float


router = APIRouter(tags=["deepline"])
LANE = (  # inference skips FastAPI's route walk (deepline.serve.fast_lane)
    LaneRoute("/predict/{name}", lambda request, p: _answers(request, p["name"], None)),
)
PROTOCOLS.register(
    "deepline", prefixes=("/predict/", "/generate/", "/models", "/monitor/"), order=10, lane=LANE
)(router)


@router.get("/models", summary="The served models and their versions")
async def list_models(request: Request) -> dict[str, Any]:
    return {
        "models": [
            {
                "name": name,
                "versions": sorted(versions),
                "latest": max(versions),
                **{
                    k: versions[max(versions)].metadata()[k]
                    for k in ("task", "generates", "input_codec", "classes")
                },
            }
            for name, versions in sorted(plane(request).models.models.items())
        ]
    }


@router.get(
    "/models/{name}", responses=errors(404), summary="One model's metadata (latest or ?version=)"
)
async def model_metadata(
    request: Request, name: str, version: int | None = Query(None, ge=1)
) -> dict[str, Any]:
    model = plane(request).model(request, name, version)
    return {**model.metadata(), "versions": sorted(plane(request).models.models[name])}


@router.get(
    "/models/{name}/card",
    responses=errors(404),
    summary="The model card `deepline audit` bound to these weights, with whether it still "
    "describes them (`describes_this_bundle`)",
)
async def model_card(
    request: Request, name: str, version: int | None = Query(None, ge=1)
) -> dict[str, Any]:
    model = plane(request).model(request, name, version)
    card = model.card
    if card is None:
        raise NotFound(
            f"model '{model.name}' version {model.version} has no model card: run "
            "`deepline audit BUNDLE` before adding it"
        )
    return {"model": model.name, "version": model.version, **card}


@router.post(
    "/predict/{name}",
    response_model=PredictResponse,
    summary="Answer inputs: classes of images, sequences or texts, values of features",
    responses=errors(404, 504),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": body_schema(PredictRequest)},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "file": {
                                "type": "array",
                                "items": {"type": "string", "format": "binary"},
                            },
                            "top_k": {"type": "integer", "minimum": 1},
                        },
                        "required": ["file"],
                    }
                },
            },
        }
    },
)
async def predict(request: Request, name: str, version: int | None = Query(None, ge=1)) -> Response:
    return await _answers(request, name, version)


async def _answers(request: Request, name: str, version: int | None) -> Response:
    start = time.perf_counter()
    data = plane(request)
    model = data.model(request, name, version)
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        inputs, top_k = await _form_inputs(request)
    else:
        body = _parse(PredictRequest, await request.body())
        inputs, top_k = [_raw(item) for item in body.inputs], body.top_k
    predictions = await data.predict(model, {"": inputs}, top_k)
    return JSONResponse({
        "model": model.name,
        "version": model.version,
        "predictions": predictions,
        "latency_ms": round((time.perf_counter() - start) * 1000, 3),
    })  # fmt: skip


@router.post(
    "/generate/{name}",
    response_model=GenerateResponse | ImagesResponse,
    response_model_by_alias=True,
    responses=errors(404, 504),
    summary="Continue a prompt with text (a language model), or make images of seeds and a "
    "class (an image generator)",
)
async def generate(
    request: Request,
    name: str,
    body: GenerateRequest | ImageRequest,
    version: int | None = Query(None, ge=1),
) -> dict[str, Any]:
    start = time.perf_counter()
    data = plane(request)
    model = data.model(request, name, version)
    if isinstance(body, ImageRequest):
        made: dict[str, Any] = {"images": await data.generate_images(model, body)}
    else:
        (text,) = await data.generate(model, [body])
        made = {"text": text}
    return {
        "model": model.name,
        "version": model.version,
        **made,
        "latency_ms": round((time.perf_counter() - start) * 1000, 3),
    }


@router.get(
    "/monitor/{name}",
    responses=errors(404),
    summary="Drift of live traffic against the training data",
)
async def monitor(
    request: Request, name: str, version: int | None = Query(None, ge=1)
) -> dict[str, Any]:
    model = plane(request).model(request, name, version)
    if model.drift is None:
        return {"model": model.name, "version": model.version, "status": "no reference"}
    return {"model": model.name, "version": model.version, **model.drift.report()}


def _parse(schema: type[BaseModel], raw: bytes) -> Any:
    try:
        return schema.model_validate_json(raw or b"null")
    except ValidationError as err:
        raise BadRequest(f"invalid request: {validation_problems(err.errors())}") from None


def _raw(item: Image64 | str | list[Any] | dict[str, Cell]) -> Any:
    if isinstance(item, Image64):
        data = item.b64
        if data.startswith("data:") and "," in data:  # a data URL, as canvas.toDataURL() gives
            data = data.split(",", 1)[1]
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("an input's 'b64' is not valid base64") from None
    return item


async def _form_inputs(request: Request) -> tuple[list[Any], int | None]:
    limit = request.app.state.settings.max_body_bytes
    try:
        form = await request.form(max_files=MAX_INPUTS, max_part_size=limit)
    except Exception as err:  # the multipart parser's own errors
        raise BadRequest(f"unreadable multipart body ({err})") from None
    files = [part for part in form.getlist("file") if not isinstance(part, str)]
    if not files:
        raise BadRequest("a multipart request needs one or more 'file' parts")
    top_k = form.get("top_k")
    if top_k is not None and (not isinstance(top_k, str) or not top_k.isdigit()):
        raise BadRequest("top_k must be a positive integer")
    return [await f.read() for f in files], int(top_k) if top_k else None
