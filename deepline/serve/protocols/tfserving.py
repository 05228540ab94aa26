"""TensorFlow Serving's REST API, so TF Serving clients call deepline models unchanged.

``GET  /v1/models/{name}[/versions/{v}]``             status (``GetModelStatusResponse`` JSON)
``GET  /v1/models/{name}[/versions/{v}]/metadata``    the ``serving_default`` signature
``POST /v1/models/{name}[/versions/{v}]:predict``     ``{"instances": [...]}`` (row format) or
                                                      ``{"inputs": ...}`` (columnar format)

Classifiers take one input, ``input``: raw pixels (or sequence values, or token ids) shaped like
the signature, e.g. ``[28, 28]`` or ``[1, 28, 28]`` per instance for MNIST. A JSON number written
with a fraction or exponent (``0.5``, ``1.0``) makes the tensor float, read as values in [0, 1];
a tensor of integers only is read as 0..255 and divided by 255. ``{"b64": ...}`` values are
binary strings: an encoded image (PNG, JPEG, ...) for image models. Texts are plain strings.
They answer ``logits``, ``probabilities`` and ``label``, per instance (row format) or as tensors
(columnar). Language models take prompts: strings, or ``{"prompt": ..., "max_tokens": ...}``
with the sampling parameters of ``POST /generate/{name}``; they answer ``text``.

Errors are ``{"error": "..."}``: 400 for a malformed request, 404 for an unknown model/version.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from deepline.deploy.predictor import Predictor
from deepline.serve.errors import BadRequest, NotFound
from deepline.serve.protocols.deepline_api import (
    MAX_INPUTS,
    GenerateRequest,
    models,
    served,
    write,
)
from deepline.serve.served import ServedModel

SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
PARSE_INLINE_BYTES = 64 * 1024  # larger bodies are parsed on a thread
MAX_RANK = 8  # dimensions of one tensor, batch included
DTYPES = {
    "float32": "DT_FLOAT",
    "FP32": "DT_FLOAT",
    "float64": "DT_DOUBLE",
    "int64": "DT_INT64",
    "INT64": "DT_INT64",
    "int32": "DT_INT32",
    "uint8": "DT_UINT8",
    "BYTES": "DT_STRING",
}
# what a language model takes besides its prompt, as TF dtypes (GenerateRequest's fields)
SAMPLING = {
    "max_tokens": "DT_INT64",
    "temperature": "DT_FLOAT",
    "top_k": "DT_INT64",
    "top_p": "DT_FLOAT",
    "seed": "DT_INT64",
}

# One input's value: numbers (any shape, batch first when batched), a string, binary bytes (from
# {"b64": ...}), or a batch of strings/bytes.
Tensor = np.ndarray | str | bytes | list[str | bytes]


@dataclass(frozen=True)
class PredictPayload:
    """A parsed ``:predict`` body. ``inputs`` maps input names to tensors; the key ``""`` holds
    the one unnamed input when the instances (or ``inputs``) were not objects."""

    row: bool  # "instances" (answered with "predictions") or "inputs" (answered with "outputs")
    inputs: dict[str, Tensor] = field(default_factory=dict)
    signature_name: str = ""


router = APIRouter(tags=["tensorflow-serving"])


# -- routes -------------------------------------------------------------------------------------


@router.get("/v1/models/{name}", summary="TF Serving: status of every version of a model")
async def model_status(request: Request, name: str) -> Response:
    served(request, name, None)  # 404 for an unknown name
    return _json({"model_version_status": [_status(m) for m in _versions(request, name)]})


@router.get("/v1/models/{name}/versions/{version}", summary="TF Serving: status of one version")
async def version_status(request: Request, name: str, version: str) -> Response:
    return _json({"model_version_status": [_status(served(request, name, version))]})


@router.get("/v1/models/{name}/metadata", summary="TF Serving: signature of the latest version")
async def model_metadata(request: Request, name: str) -> Response:
    return _json(_metadata(served(request, name, None)))


@router.get(
    "/v1/models/{name}/versions/{version}/metadata",
    summary="TF Serving: signature of one version",
)
async def version_metadata(request: Request, name: str, version: str) -> Response:
    return _json(_metadata(served(request, name, version)))


BODY = {  # the :predict body, for the OpenAPI page
    "type": "object",
    "properties": {
        "signature_name": {"type": "string"},
        "instances": {"type": "array", "description": "row format: one item per instance"},
        "inputs": {"description": "columnar format: a tensor, or an object of named tensors"},
    },
}
_TARGET = re.compile(r"(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?:(?P<verb>[^/:]+)")


@router.post(
    "/v1/models/{target:path}",
    summary="TF Serving: POST /v1/models/{name}[/versions/{version}]:predict",
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": BODY}}}
    },
)
async def predict(request: Request, target: str) -> Response:
    # FastAPI path parameters cannot end at a ':', so the route takes the rest of the path
    match = _TARGET.fullmatch(target)
    if match is None:
        raise NotFound(
            f"no endpoint POST /v1/models/{target}; use /v1/models/NAME[/versions/VERSION]:predict"
        )
    model = served(request, match["name"], match["version"])
    if match["verb"] != "predict":
        raise BadRequest(f"':{match['verb']}' is not supported: deepline models answer ':predict'")
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
    if model.predictor.generates:
        return _json(await _generate(model, payload))
    return _json(await _classify(model, payload))


# -- status and metadata ------------------------------------------------------------------------


def _versions(request: Request, name: str) -> list[ServedModel]:
    versions = models(request).models[name]
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
    if model.predictor.generates:
        inputs = {
            key: _tensor_info(f"serving_default_{key}:0", dtype, [-1])
            for key, dtype in {"prompt": "DT_STRING", **SAMPLING}.items()
        }
        outputs = {"text": _tensor_info("StatefulPartitionedCall:0", "DT_STRING", [-1])}
    else:
        inputs = {
            spec["name"]: _tensor_info(
                f"serving_default_{spec['name']}:0", spec["dtype"], spec["shape"]
            )
            for spec in model.predictor.signature["inputs"]
        }
        outputs = {
            spec["name"]: _tensor_info(
                f"StatefulPartitionedCall:{i}", spec["datatype"], spec["shape"]
            )
            for i, spec in enumerate(model.output_specs())
        }
    return {"inputs": inputs, "outputs": outputs, "method_name": PREDICT_METHOD}


# -- parsing a :predict body (pure: raises only BadRequest) --------------------------------------


def parse_predict_request(body: bytes) -> PredictPayload:
    """A ``:predict`` body -> its inputs, checked for form but not against any model.

    >>> parse_predict_request(b'{"instances": [[0, 255], [255, 0]]}').inputs[""].shape
    (2, 2)
    """
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as err:  # ValueError: also bytes that are not UTF-8
        raise BadRequest(f"the body is not valid JSON ({_short(err)})") from None
    if not isinstance(doc, dict):
        raise BadRequest("the body must be a JSON object with 'instances' or 'inputs'")
    unknown = sorted(set(doc) - {"signature_name", "instances", "inputs"})
    if unknown:
        raise BadRequest(
            f"unknown key '{_short(unknown[0])}' (allowed: signature_name, instances, inputs)"
        )
    signature = doc.get("signature_name", "")
    if not isinstance(signature, str):
        raise BadRequest("'signature_name' must be a string")
    if ("instances" in doc) == ("inputs" in doc):
        raise BadRequest(
            "give exactly one of 'instances' (row format) or 'inputs' (columnar format)"
            if "instances" in doc
            else "Missing 'inputs' or 'instances' key"
        )
    if "instances" in doc:
        return PredictPayload(True, _rows(doc["instances"]), signature)
    return PredictPayload(False, _columns(doc["inputs"]), signature)


def _rows(instances: Any) -> dict[str, Tensor]:
    if not isinstance(instances, list):
        raise BadRequest("'instances' must be a list with one item per instance")
    if not instances:
        raise BadRequest("'instances' is empty")
    if len(instances) > MAX_INPUTS:
        raise BadRequest(f"{len(instances)} instances: at most {MAX_INPUTS} in one request")
    named = [_is_named(item) for item in instances]
    if not any(named):
        return {"": _tensor(instances, "'instances'")}
    if not all(named):
        raise BadRequest("'instances' mixes objects of named inputs with plain values")
    keys = list(instances[0])
    if not keys:
        raise BadRequest("instance 0 is an empty object: name at least one input")
    for i, item in enumerate(instances):
        if set(item) != set(keys):
            raise BadRequest(
                f"instance {i} has inputs {sorted(item)[:8]} but instance 0 has {sorted(keys)[:8]}"
                ": every instance must name the same inputs"
            )
    return {k: _tensor([item[k] for item in instances], f"input '{_short(k)}'") for k in keys}


def _columns(inputs: Any) -> dict[str, Tensor]:
    if inputs is None:
        raise BadRequest("'inputs' is null")
    if not _is_named(inputs):
        return {"": _checked_rows(_tensor(inputs, "'inputs'"), "'inputs'")}
    if not inputs:
        raise BadRequest("'inputs' is an empty object: name at least one input")
    return {
        k: _checked_rows(_tensor(v, f"input '{_short(k)}'"), f"input '{_short(k)}'")
        for k, v in inputs.items()
    }


def _checked_rows(tensor: Tensor, where: str) -> Tensor:
    rows = len(tensor) if isinstance(tensor, list) else None
    if isinstance(tensor, np.ndarray) and tensor.ndim:
        rows = tensor.shape[0]
    if rows == 0:
        raise BadRequest(f"{where} is empty")
    if rows is not None and rows > MAX_INPUTS:
        raise BadRequest(f"{where} holds {rows} rows: at most {MAX_INPUTS} in one request")
    return tensor


def _is_named(value: Any) -> bool:
    """An object of named inputs (not a ``{"b64": ...}`` binary value)."""
    return isinstance(value, dict) and set(value) != {"b64"}


def _tensor(value: Any, where: str) -> Tensor:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return _binary(value, where)
    if isinstance(value, list) and value and all(isinstance(v, (str, dict)) for v in value):
        strings: list[str | bytes] = []
        for i, item in enumerate(value):
            strings.append(item if isinstance(item, str) else _binary(item, f"{where}[{i}]"))
        return strings
    return _numbers(value, where)


def _binary(value: dict[str, Any], where: str) -> bytes:
    encoded = value.get("b64") if set(value) == {"b64"} else None
    if not isinstance(encoded, str):
        raise BadRequest(
            f"{where}: an object here must be a binary value {{'b64': '<base64>'}}, got keys "
            f"{sorted(value)[:8]}"
        )
    for altchars in (None, b"-_"):  # standard, then web-safe base64
        try:
            return base64.b64decode(encoded, altchars=altchars, validate=True)
        except (binascii.Error, ValueError):
            continue
    raise BadRequest(f"{where}: 'b64' is not valid base64")


def _numbers(value: Any, where: str) -> np.ndarray:
    """Nested lists of JSON numbers -> an int64 array (integers only) or a float64 one."""
    shape, leaves = _shape(value, where)
    kinds = set(map(type, leaves))
    if not kinds <= {int, float}:  # bool, None, str, objects; bool is not a number here
        odd = next(v for v in leaves if type(v) not in (int, float))
        raise BadRequest(f"{where} must hold numbers only, got {_short(json.dumps(odd))}")
    try:
        array = np.array(value, dtype=np.float64 if float in kinds else np.int64)
    except (OverflowError, ValueError, TypeError):
        raise BadRequest(f"{where} holds a number too large for a tensor") from None
    assert array.shape == shape
    return array


def _shape(value: Any, where: str) -> tuple[tuple[int, ...], list[Any]]:
    """The shape of rectangular nested lists and their leaves (BadRequest when ragged)."""
    shape: list[int] = []
    level = [value]
    while isinstance(level[0], list):
        if len(shape) == MAX_RANK:
            raise BadRequest(f"{where} is nested deeper than {MAX_RANK} dimensions")
        size = len(level[0])
        if any(not isinstance(x, list) or len(x) != size for x in level):
            raise BadRequest(f"{where} is ragged: lists at depth {len(shape)} differ in length")
        shape.append(size)
        level = [child for x in level for child in x]
        if not level:
            return tuple(shape), []
    if any(isinstance(x, list) for x in level):
        raise BadRequest(f"{where} is ragged: lists at depth {len(shape)} differ in length")
    return tuple(shape), level


def _short(value: Any, limit: int = 80) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."


# -- running ------------------------------------------------------------------------------------


def _one_input(model: ServedModel, payload: PredictPayload) -> Tensor:
    expected = str(model.predictor.signature["inputs"][0]["name"])
    if "" in payload.inputs:
        return payload.inputs[""]
    if set(payload.inputs) != {expected}:
        given = ", ".join(sorted(payload.inputs))
        raise BadRequest(f"model '{model.name}' takes one input named '{expected}', got: {given}")
    return payload.inputs[expected]


def prepare_numbers(predictor: Predictor, array: np.ndarray) -> np.ndarray:
    """A parsed numeric tensor -> the model's batch (InputError or BadRequest when refused)."""
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is checked just below
        batch = predictor.prepare_tensor(array)  # InputError naming the shapes, or NaN values
    if batch.dtype.kind == "f" and not np.isfinite(batch).all():
        # finite values so large that normalising them overflows float32
        raise BadRequest("input values are too large: give pixels in [0, 1] or 0..255")
    return batch


async def _classify(model: ServedModel, payload: PredictPayload) -> dict[str, Any]:
    tensor = _one_input(model, payload)
    if isinstance(tensor, np.ndarray):
        batch = prepare_numbers(model.predictor, tensor)
    else:  # encoded images or texts, prepared like deepline's own API does
        batch = await model.prepare([tensor] if isinstance(tensor, (str, bytes)) else tensor)
    outputs = {k: v.tolist() for k, v in model.named_outputs(await model.infer(batch)).items()}
    if not payload.row:
        return {"outputs": outputs}
    rows = len(outputs["label"])
    return {"predictions": [{k: v[i] for k, v in outputs.items()} for i in range(rows)]}


async def _generate(model: ServedModel, payload: PredictPayload) -> dict[str, Any]:
    texts = [await write(model, r) for r in generation_requests(payload)]
    return (
        {"predictions": [{"text": t} for t in texts]}
        if payload.row
        else {"outputs": {"text": texts}}
    )


def generation_requests(payload: PredictPayload) -> list[GenerateRequest]:
    """One checked GenerateRequest per prompt: parameters given once apply to every prompt."""
    inputs = dict(payload.inputs)
    prompts = _prompts(inputs.pop("prompt") if "prompt" in inputs else inputs.pop("", None))
    unknown = sorted(set(inputs) - set(SAMPLING))
    if unknown:
        raise BadRequest(
            f"unknown input '{_short(unknown[0])}' for a language model "
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
    requests = []
    for i, prompt in enumerate(prompts):
        fields = {"prompt": prompt, **shared, **{k: v[i] for k, v in each.items()}}
        try:
            requests.append(GenerateRequest.model_validate(fields))
        except ValidationError as err:
            problem = err.errors()[0]
            where = ".".join(str(p) for p in problem["loc"])
            raise BadRequest(f"prompt {i}: {where}: {problem['msg']}") from None
    return requests


def _prompts(value: Tensor | None) -> list[str]:
    if value is None:
        raise BadRequest("a language model needs prompts: strings, or objects with 'prompt'")
    items = [value] if isinstance(value, (str, bytes)) else value
    if isinstance(items, np.ndarray):
        raise BadRequest("a language model takes text prompts, not numbers")
    try:
        return [p.decode("utf-8") if isinstance(p, bytes) else p for p in items]
    except UnicodeDecodeError:
        raise BadRequest("a binary prompt is not UTF-8 text") from None


def _json(content: dict[str, Any]) -> Response:
    # TF Serving writes NaN and Infinity as bare tokens (its "JSON conformance" section)
    return Response(json.dumps(content, allow_nan=True), media_type="application/json")
