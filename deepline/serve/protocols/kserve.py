"""KServe V2 (the Open Inference Protocol) over HTTP, as KServe and Triton speak it.

``GET  /v2``                                      server metadata and extensions
``GET  /v2/health/live``, ``/v2/health/ready``    liveness; readiness of every model
``GET  /v2/models/{name}[/versions/{v}]``         inputs and outputs with V2 datatypes
``GET  /v2/models/{name}[/versions/{v}]/ready``   200 when the model is ready
``POST /v2/models/{name}[/versions/{v}]/infer``   tensors in, tensors out
``POST /v2/repository/index``                     every model version and its state

Inputs hold raw values as the model's input codec reads them: images as pixels (FP32 in [0, 1],
or UINT8 0..255) shaped like the signature or as encoded files (BYTES), token ids (INT64/INT32)
or texts (BYTES) for text classifiers, rows of features (or one tensor per named feature); and a
BYTES ``prompt`` for generating models, with ``max_tokens``, ``temperature``, ``top_k``,
``top_p`` and ``seed`` in the request's ``parameters``; they answer a BYTES tensor ``text``.
Other models answer their task's named outputs (``logits``, ``probabilities`` and ``label`` for
a classifier; ``values`` for regression).

Extensions: ``binary_tensor_data`` (an ``Inference-Header-Content-Length`` header, raw
little-endian tensors after the JSON, BYTES elements behind a 4-byte length), ``classification``
(``{"classification": k}`` on a requested output: the top k as ``"value:index:label"``) and
``model_repository``, read-only like Triton with ``--model-control-mode=none``: the index
answers, load and unload are refused. Errors are ``{"error": "..."}``.

Parsing and encoding are pure functions in ``kserve_payload`` (``parse_infer_request``,
``plan_outputs``, ``encode_response``); the routes only find the model and run it.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from deepline import __version__
from deepline.registry import PROTOCOLS
from deepline.serve.dataplane import SAMPLING, DataPlane, generation_request, plane
from deepline.serve.errors import BadRequest, ServeError
from deepline.serve.fast_lane import LaneRoute
from deepline.serve.openapi import body_schema, errors
from deepline.serve.protocols.kserve_payload import (
    DATATYPES,
    HEADER,
    MAX_DIMS,
    MAX_TENSORS,
    InferInput,
    InferRequest,
    RequestedOutput,
    build_outputs,
    encode_response,
    parse_header_length,
    parse_index_request,
    parse_infer_request,
    plan_outputs,
)
from deepline.serve.served import ServedModel

V2_NAMES = {"float32": "FP32", "float64": "FP64", "float16": "FP16", "int64": "INT64",
            "int32": "INT32", "uint8": "UINT8", "bytes": "BYTES"}  # fmt: skip
LARGE_BODY = 256 * 1024
EXTENSIONS = ["binary_tensor_data", "classification", "model_repository"]


# -- the model side --------------------------------------------------------------------------


def input_specs(model: ServedModel) -> list[dict[str, Any]]:
    if model.generates:
        return [{"name": "prompt", "datatype": "BYTES", "shape": [-1]}]
    return [
        {"name": spec["name"], "datatype": V2_NAMES[spec["dtype"]], "shape": spec["shape"]}
        for spec in model.predictor.codec.named_inputs()
    ]


def output_specs(model: ServedModel) -> list[dict[str, Any]]:
    return model.output_dicts


def accepted_datatypes(model: ServedModel) -> list[str]:
    """The V2 datatypes the model's input codec reads."""
    codec = model.predictor.codec
    return [V2_NAMES[d] for d in codec.tensor_dtypes] + (["BYTES"] if codec.takes_bytes else [])


def _checked(model: ServedModel, tensor: InferInput, allowed: Sequence[str]) -> InferInput:
    if tensor.datatype not in allowed:
        raise BadRequest(
            f"input '{tensor.name}' of model '{model.name}' takes {', '.join(allowed)}, "
            f"not {tensor.datatype}"
        )
    if tensor.data.size == 0:
        raise BadRequest(f"input '{tensor.name}' has no elements")
    if tensor.datatype == "BYTES" and tensor.data.ndim != 1:
        raise BadRequest(f"input '{tensor.name}' of BYTES elements must have shape [N]")
    return tensor


async def infer_tensors(
    data: DataPlane, model: ServedModel, request: InferRequest
) -> dict[str, np.ndarray]:
    allowed = accepted_datatypes(model)
    inputs = {t.name: _checked(model, t, allowed).data for t in request.inputs}
    return await data.infer(model, inputs)


async def generate_text(
    data: DataPlane, model: ServedModel, request: InferRequest
) -> dict[str, np.ndarray]:
    given = [tensor.name for tensor in request.inputs]
    if given != ["prompt"]:
        raise BadRequest(f"model '{model.name}' takes one input 'prompt', got {given}")
    tensor = _checked(model, request.inputs[0], ("BYTES",))
    try:
        prompts = [bytes(item).decode("utf-8") for item in tensor.data.reshape(-1)]
    except UnicodeDecodeError:
        raise BadRequest(f"input '{tensor.name}': BYTES elements must be UTF-8 text") from None
    given_sampling = {key: request.parameters[key] for key in SAMPLING if key in request.parameters}
    # every prompt checked before any is answered
    requests = [generation_request({"prompt": p, **given_sampling}, strict=True) for p in prompts]
    texts = await data.generate(model, requests)
    return {"text": np.array(texts, dtype=object).reshape(tensor.shape)}


# -- documentation models --------------------------------------------------------------------


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    name: str
    datatype: str = Field(description="BOOL, UINT8..UINT64, INT8..INT64, FP16, FP32, FP64, BYTES")
    shape: list[int] = Field(description="-1 for a dimension of any size")


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class RequestInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    shape: list[Annotated[int, Field(ge=0)]] = Field(max_length=MAX_DIMS)
    datatype: str = Field(json_schema_extra={"enum": list(DATATYPES)})
    parameters: dict[str, Any] | None = Field(
        None, description="binary_data_size, with the binary tensor extension"
    )
    data: list[Any] = Field(description="row-major elements, flat or nested")


class RequestOutputDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    parameters: dict[str, Any] | None = Field(
        None, description="binary_data: bool; classification: top k"
    )


class InferenceRequestDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = None
    parameters: dict[str, Any] | None = Field(
        None, description="binary_data_output; max_tokens, temperature, top_k, top_p, seed"
    )
    inputs: list[RequestInput] = Field(min_length=1, max_length=MAX_TENSORS)
    outputs: list[RequestOutputDoc] | None = Field(None, max_length=MAX_TENSORS)


class IndexRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ready: bool = False
    repository_name: str | None = None


class ReadyBody(BaseModel):
    ready: bool


class ModelReadyBody(BaseModel):
    name: str
    ready: bool


class ResponseOutput(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class InferenceResponseDoc(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[ResponseOutput]


class IndexEntry(BaseModel):
    name: str
    version: str
    state: str
    reason: str


BINARY = {"type": "string", "format": "binary"}
INFER_DOCS: dict[str, Any] = {
    "description": "JSON tensors; with Triton's binary tensor data extension a JSON header of "
    f"`{HEADER}` bytes, then the tensors' bytes (application/octet-stream both ways).",
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": body_schema(InferenceRequestDoc)}},
        },
    },
    "responses": {
        200: {
            "model": InferenceResponseDoc,
            "description": "the outputs (binary outputs: application/octet-stream)",
            "content": {"application/octet-stream": {"schema": BINARY}},
        },
        **errors(404, 415, 504),
    },
    "response_class": Response,
}

# -- routes ----------------------------------------------------------------------------------

router = APIRouter(tags=["KServe V2"])
LANE = (  # inference skips FastAPI's route walk (deepline.serve.fast_lane)
    LaneRoute("/v2/models/{name}/infer", lambda request, p: _infer(request, p["name"], None)),
    LaneRoute("/v2/models/{name}/versions/{version}/infer",
              lambda request, p: _infer(request, p["name"], p["version"])),
)  # fmt: skip
PROTOCOLS.register("kserve", prefixes=("/v2",), order=30, lane=LANE)(router)


@router.get("/v2", response_model=ServerMetadata, summary="V2 server metadata")
async def server_metadata() -> dict[str, Any]:
    return {"name": "deepline", "version": __version__, "extensions": EXTENSIONS}


@router.get("/v2/health/live", summary="V2 liveness: 200 while the server answers")
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get(
    "/v2/health/ready",
    summary="V2 readiness: 200 when every model is ready, else 503",
    response_model=ReadyBody,
    responses={503: {"model": ReadyBody, "description": "a model is not ready"}},
)
async def ready(request: Request) -> JSONResponse:
    ok = all(model.ready for model in plane(request).models)
    return JSONResponse({"ready": ok}, status_code=200 if ok else 503)


def _metadata(request: Request, name: str, version: str | None) -> dict[str, Any]:
    model = plane(request).model(request, name, version)
    return {
        "name": model.name,
        "versions": [str(v) for v in sorted(plane(request).models.models[name])],
        "platform": f"deepline_{model.predictor.backend}",
        "inputs": input_specs(model),
        "outputs": output_specs(model),
    }


@router.get(
    "/v2/models/{name}",
    response_model=ModelMetadata,
    responses=errors(404),
    summary="V2 model metadata (latest version)",
)
async def model_metadata(request: Request, name: str) -> dict[str, Any]:
    return _metadata(request, name, None)


@router.get(
    "/v2/models/{name}/versions/{version}",
    response_model=ModelMetadata,
    responses=errors(404),
    summary="V2 model metadata of one version",
)
async def version_metadata(request: Request, name: str, version: str) -> dict[str, Any]:
    return _metadata(request, name, version)


def _ready(request: Request, name: str, version: str | None) -> JSONResponse:
    model = plane(request).model(request, name, version)
    body = {"name": model.name, "ready": model.ready}
    return JSONResponse(body, status_code=200 if model.ready else 503)


@router.get(
    "/v2/models/{name}/ready",
    response_model=ModelReadyBody,
    responses={**errors(404), 503: {"model": ModelReadyBody, "description": "not ready"}},
    summary="V2 model readiness (latest)",
)
async def model_ready(request: Request, name: str) -> JSONResponse:
    return _ready(request, name, None)


@router.get(
    "/v2/models/{name}/versions/{version}/ready",
    response_model=ModelReadyBody,
    responses={**errors(404), 503: {"model": ModelReadyBody, "description": "not ready"}},
    summary="V2 readiness of one model version",
)
async def version_ready(request: Request, name: str, version: str) -> JSONResponse:
    return _ready(request, name, version)


async def _infer(request: Request, name: str, version: str | None) -> Response:
    data = plane(request)
    model = data.model(request, name, version)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise ServeError(415, f"compressed bodies (Content-Encoding: {encoding}) are not read")
    body = await request.body()
    length = parse_header_length(request.headers.get(HEADER))
    if len(body) > LARGE_BODY:  # parse big bodies off the event loop: probes stay answered
        parsed = await asyncio.to_thread(parse_infer_request, body, length)
    else:
        parsed = parse_infer_request(body, length)
    specs, classes = output_specs(model), classes_of(model)
    plan = plan_for(model, parsed, specs, classes)
    if model.generates:
        tensors = await generate_text(data, model, parsed)
    else:
        tensors = await infer_tensors(data, model, parsed)
    outputs = build_outputs(plan, tensors, specs, classes)
    body, headers = encode_response(model.name, model.version, outputs, parsed.id)
    return Response(body, headers=headers)


_EVERY_OUTPUT: weakref.WeakKeyDictionary[ServedModel, dict[bool, list[RequestedOutput]]] = (
    weakref.WeakKeyDictionary()
)


def plan_for(
    model: ServedModel,
    parsed: InferRequest,
    specs: list[dict[str, Any]],
    classes: dict[str, tuple[str, ...]],
) -> list[RequestedOutput]:
    """``plan_outputs``, kept per model for requests that name no outputs (most of them)."""
    if parsed.outputs:
        return plan_outputs(parsed, specs, classes)
    plans = _EVERY_OUTPUT.setdefault(model, {})
    binary = parsed.binary_output
    if binary not in plans:
        plans[binary] = plan_outputs(parsed, specs, classes)
    return plans[binary]


def classes_of(model: ServedModel) -> dict[str, tuple[str, ...]]:
    """Outputs of scores over classes, for the classification extension: name -> classes."""
    return model.output_classes


@router.post("/v2/models/{name}/infer", summary="V2 inference (latest version)", **INFER_DOCS)
async def infer(request: Request, name: str) -> Response:
    return await _infer(request, name, None)


@router.post(
    "/v2/models/{name}/versions/{version}/infer",
    summary="V2 inference with one model version",
    **INFER_DOCS,
)
async def version_infer(request: Request, name: str, version: str) -> Response:
    return await _infer(request, name, version)


@router.post(
    "/v2/repository/index",
    response_model=list[IndexEntry],
    summary="Every model version in the repository and its state",
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": body_schema(IndexRequest)}},
        }
    },
)
async def repository_index(request: Request) -> list[dict[str, str]]:
    ready_only = parse_index_request(await request.body())
    return [
        {
            "name": model.name,
            "version": str(model.version),
            "state": "READY" if model.ready else "UNAVAILABLE",
            "reason": "",
        }
        for model in sorted(plane(request).models, key=lambda m: (m.name, m.version))
        if model.ready or not ready_only
    ]


REFUSED = (
    "models are not loaded or unloaded over HTTP: this server serves a fixed repository "
    "(restart it to change models)"
)


@router.post(
    "/v2/repository/models/{name}/{action}",
    status_code=403,
    responses=errors(403),
    summary="Refused (load, unload): models are fixed when the server starts",
)
async def load_or_unload(name: str, action: Literal["load", "unload"]) -> None:
    raise ServeError(403, REFUSED)
