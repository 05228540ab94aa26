"""TensorFlow Serving's REST API, so TF Serving clients call deepline models unchanged.

``GET  /v1/models/{name}[/versions/{v}]``             status (``GetModelStatusResponse`` JSON)
``GET  /v1/models/{name}[/versions/{v}]/metadata``    the ``serving_default`` signature
``POST /v1/models/{name}[/versions/{v}]:predict``     ``{"instances": [...]}`` (row format) or
                                                      ``{"inputs": ...}`` (columnar format)

Models take their input ``input`` as the signature shapes it: raw pixels (e.g. ``[28, 28]`` or
``[1, 28, 28]`` per instance for MNIST), sequence values, token ids or rows of features; a
model of named features also takes one input per feature (instances as objects). A JSON number
written with a fraction or exponent (``0.5``, ``1.0``) makes the tensor float, read as values
in [0, 1]; a tensor of integers only is read as 0..255 pixels. ``{"b64": ...}`` values are
binary strings: an encoded image (PNG, JPEG, ...) for image models. Texts are plain strings.
They answer the task's named outputs (``logits``, ``probabilities`` and ``label`` for a
classifier; ``values`` for regression), per instance (row format) or as tensors (columnar).
Generating models take prompts: strings, or ``{"prompt": ..., "max_tokens": ...}`` with the
sampling parameters of ``POST /generate/{name}``; they answer ``text``. Bodies are parsed by
``tfserving_payload``.

Errors are ``{"error": "..."}``: 400 for a malformed request, 404 for an unknown model/version.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from starlette.convertors import Convertor, register_url_convertor

from deepline.registry import PROTOCOLS
from deepline.serve import wire_json
from deepline.serve.dataplane import (
    MAX_INPUTS,
    SAMPLING,
    GenerateRequest,
    generation_request,
    plane,
)
from deepline.serve.errors import BadRequest
from deepline.serve.fast_lane import LaneRoute
from deepline.serve.openapi import errors
from deepline.serve.protocols.tfserving_payload import (
    PredictPayload,
    Tensor,
    parse_predict_request,
    short,
)
from deepline.serve.served import ServedModel

SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
PARSE_INLINE_BYTES = 64 * 1024  # larger bodies are parsed on a thread
DTYPES = {
    "float32": "DT_FLOAT",
    "FP32": "DT_FLOAT",
    "float64": "DT_DOUBLE",
    "FP64": "DT_DOUBLE",
    "int64": "DT_INT64",
    "INT64": "DT_INT64",
    "int32": "DT_INT32",
    "INT32": "DT_INT32",
    "uint8": "DT_UINT8",
    "BOOL": "DT_BOOL",
    "BYTES": "DT_STRING",
}
# what a generating model takes besides its prompt, as TF dtypes (GenerateRequest's fields)
SAMPLING_DTYPES = {
    name: "DT_FLOAT" if GenerateRequest.model_fields[name].annotation in (float, float | None)
    else "DT_INT64"
    for name in SAMPLING
}  # fmt: skip

router = APIRouter(tags=["tensorflow-serving"])
LANE = (  # inference skips FastAPI's route walk (deepline.serve.fast_lane)
    LaneRoute("/v1/models/{name:tfname}:{verb:tfname}",
              lambda request, p: _predict(request, p["name"], None, p["verb"])),
    LaneRoute("/v1/models/{name:tfname}/versions/{version:tfname}:{verb:tfname}",
              lambda request, p: _predict(request, p["name"], p["version"], p["verb"])),
)  # fmt: skip
PROTOCOLS.register("tfserving", prefixes=("/v1/",), order=20, lane=LANE)(router)


# -- routes -------------------------------------------------------------------------------------


class _NameConvertor(Convertor[str]):
    """A model name, version or verb: no '/' and no ':' (which starts the verb), but any other
    character (Starlette's default stops at a newline, then reached other routes)."""

    regex = r"[^/:]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("tfname", _NameConvertor())
NAME = Path(pattern=r"^[^/:]+$", description="a served model's name")
VERSION = Path(pattern=r"^[^/:]+$", description="a version number of the model")


@router.get(
    "/v1/models/{name:tfname}",
    responses=errors(404, 405),  # a name with ":" is a method path
    summary="TF Serving: status of every version of a model",
)
async def model_status(request: Request, name: str = NAME) -> Response:
    plane(request).model(request, name, None)  # 404 for an unknown name
    return _json({"model_version_status": [_status(m) for m in _versions(request, name)]})


@router.get(
    "/v1/models/{name:tfname}/versions/{version:tfname}",
    responses=errors(404, 405),  # a name with ":" is a method path
    summary="TF Serving: status of one version",
)
async def version_status(request: Request, name: str = NAME, version: str = VERSION) -> Response:
    return _json({"model_version_status": [_status(plane(request).model(request, name, version))]})


@router.get(
    "/v1/models/{name:tfname}/metadata",
    responses=errors(404, 405),  # a name with ":" is a method path
    summary="TF Serving: signature of the latest version",
)
async def model_metadata(request: Request, name: str = NAME) -> Response:
    return _json(_metadata(plane(request).model(request, name, None)))


@router.get(
    "/v1/models/{name:tfname}/versions/{version:tfname}/metadata",
    responses=errors(404, 405),  # a name with ":" is a method path
    summary="TF Serving: signature of one version",
)
async def version_metadata(request: Request, name: str = NAME, version: str = VERSION) -> Response:
    return _json(_metadata(plane(request).model(request, name, version)))


BODY = {  # the :predict body, as strict as parse_predict_request
    "type": "object",
    "properties": {
        "signature_name": {"type": "string"},
        "instances": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_INPUTS,
            "description": "row format: one item per instance",
        },
        "inputs": {
            "description": "columnar format: a tensor, or an object of named tensors",
            "anyOf": [
                {"type": "array", "minItems": 1},
                {"type": "object", "minProperties": 1},
                {"type": ["string", "number"]},
            ],
        },
    },
    "additionalProperties": False,
    "oneOf": [{"required": ["instances"]}, {"required": ["inputs"]}],
}


PREDICT_DOCS: dict[str, Any] = {
    "responses": errors(404, 504),
    "openapi_extra": {
        "requestBody": {"required": True, "content": {"application/json": {"schema": BODY}}}
    },
}
VERB = Path(description="the method: deepline models answer predict", examples=["predict"],
            json_schema_extra={"enum": ["predict"]})  # fmt: skip


@router.post(
    "/v1/models/{name:tfname}:{verb:tfname}",
    summary="TF Serving: predict with the latest version",
    **PREDICT_DOCS,
)
async def predict(request: Request, name: str = NAME, verb: str = VERB) -> Response:
    return await _predict(request, name, None, verb)


@router.post(
    "/v1/models/{name:tfname}/versions/{version:tfname}:{verb:tfname}",
    summary="TF Serving: predict with one version",
    **PREDICT_DOCS,
)
async def version_predict(
    request: Request, name: str = NAME, version: str = VERSION, verb: str = VERB
) -> Response:
    return await _predict(request, name, version, verb)


async def _predict(request: Request, name: str, version: str | None, verb: str) -> Response:
    data = plane(request)
    model = data.model(request, name, version)
    if verb != "predict":
        raise BadRequest(f"':{verb}' is not supported: deepline models answer ':predict'")
    body = await request.body()
    if len(body) > PARSE_INLINE_BYTES:  # ~50 ms per MiB: off the event loop
        payload = await asyncio.to_thread(parse_predict_request, body)
    else:
        payload = parse_predict_request(body)
    if payload.signature_name not in ("", SIGNATURE):
        raise BadRequest(
            f"no signature '{payload.signature_name}' in model '{model.name}' "
            f"(signatures: {SIGNATURE})"
        )
    finite = True
    if model.generates:
        texts = await data.generate(model, generation_requests(payload))
        outputs: dict[str, list[Any]] = {"text": texts}
    else:
        named = await data.infer(model, payload.inputs)
        outputs = {name: value.tolist() for name, value in named.items()}
        finite = all(np.isfinite(v).all() for v in named.values() if v.dtype.kind == "f")
    if not payload.row:
        return _json({"outputs": outputs}, finite)
    rows = len(next(iter(outputs.values())))
    rows_of = [{k: v[i] for k, v in outputs.items()} for i in range(rows)]
    return _json({"predictions": rows_of}, finite)


# -- status and metadata ------------------------------------------------------------------------


def _versions(request: Request, name: str) -> list[ServedModel]:
    versions = plane(request).models.models[name]
    return [versions[v] for v in sorted(versions)]


def _status(model: ServedModel) -> dict[str, Any]:
    return {
        "version": str(model.version),
        "state": "AVAILABLE" if model.ready else "LOADING",
        "status": {"error_code": "OK", "error_message": ""},
    }


def _metadata(model: ServedModel) -> dict[str, Any]:
    """A ``GetModelMetadataResponse`` in JSON, as TF Serving's REST API writes it."""
    return {
        "model_spec": {"name": model.name, "signature_name": "", "version": str(model.version)},
        "metadata": {"signature_def": {"signature_def": {SIGNATURE: signature_def(model)}}},
    }


def _tensor_info(name: str, dtype: str, shape: list[int]) -> dict[str, Any]:
    """A TensorInfo: ``dtype`` is a TF name (DT_FLOAT) or one of ours (float32, FP32)."""
    return {
        "dtype": dtype if dtype.startswith("DT_") else DTYPES.get(dtype, "DT_INVALID"),
        # int64 fields are strings in protobuf's JSON mapping
        "tensor_shape": {
            "dim": [{"size": str(size), "name": ""} for size in shape],
            "unknown_rank": False,
        },
        "name": name,
    }


def signature_def(model: ServedModel) -> dict[str, Any]:
    """The model's ``serving_default`` SignatureDef as TF Serving writes it in JSON."""
    if model.generates:
        specs = {"prompt": "DT_STRING", **SAMPLING_DTYPES}
        inputs = {
            key: _tensor_info(f"serving_default_{key}:0", dtype, [-1])
            for key, dtype in specs.items()
        }
    else:
        spec = model.predictor.codec.input_spec()
        inputs = {
            spec["name"]: _tensor_info(f"serving_default_{spec['name']}:0", spec["dtype"],
                                       spec["shape"])
        }  # fmt: skip
    outputs = {
        spec.name: _tensor_info(f"StatefulPartitionedCall:{i}", spec.datatype, list(spec.shape))
        for i, spec in enumerate(model.outputs)
    }
    return {"inputs": inputs, "outputs": outputs, "method_name": PREDICT_METHOD}


# -- generation ---------------------------------------------------------------------------------


def generation_requests(payload: PredictPayload) -> list[GenerateRequest]:
    """One checked GenerateRequest per prompt: parameters given once apply to every prompt."""
    inputs = dict(payload.inputs)
    prompts = _prompts(inputs.pop("prompt") if "prompt" in inputs else inputs.pop("", None))
    unknown = sorted(set(inputs) - set(SAMPLING))
    if unknown:
        raise BadRequest(
            f"unknown input '{short(unknown[0])}' for a generating model "
            f"(inputs: prompt, {', '.join(SAMPLING)})"
        )
    shared: dict[str, Any] = {}
    each: dict[str, list[Any]] = {}
    for key, value in inputs.items():
        if not isinstance(value, np.ndarray):
            raise BadRequest(f"'{key}' must be a number")
        if value.ndim == 0:
            shared[key] = value.item()
        elif value.shape == (len(prompts),):
            each[key] = value.tolist()
        else:
            raise BadRequest(
                f"'{key}' must be one number or one per prompt ({len(prompts)}), "
                f"got shape {list(value.shape)}"
            )
    return [
        generation_request(
            {"prompt": prompt, **shared, **{k: v[i] for k, v in each.items()}}, f"prompt {i}: "
        )
        for i, prompt in enumerate(prompts)
    ]


def _prompts(value: Tensor | None) -> list[str]:
    if value is None:
        raise BadRequest("a generating model needs prompts: strings, or objects with 'prompt'")
    items = [value] if isinstance(value, (str, bytes)) else value
    if isinstance(items, np.ndarray):
        raise BadRequest("a generating model takes text prompts, not numbers")
    try:
        return [p.decode("utf-8") if isinstance(p, bytes) else p for p in items]
    except UnicodeDecodeError:
        raise BadRequest("a binary prompt is not UTF-8 text") from None


def _json(content: dict[str, Any], finite: bool = False) -> Response:
    # TF Serving writes NaN and Infinity as bare tokens (its "JSON conformance" section)
    return Response(wire_json.dumps(content, finite), media_type="application/json")
