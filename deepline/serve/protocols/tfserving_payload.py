"""TensorFlow Serving ``:predict`` bodies without HTTP: parsed, checked for form, not for a model.

Row format: ``{"instances": [...]}``, one item per instance, each a value or an object of named
inputs. Columnar format: ``{"inputs": ...}``, a tensor or an object of named tensors. A JSON
number written with a fraction or exponent (``0.5``, ``1.0``) makes its tensor float; a tensor of
integers only is int64. ``{"b64": ...}`` values are binary strings (standard or web-safe
base64); other strings are texts. Raises only BadRequest.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deepline.serve import wire_json
from deepline.serve.dataplane import MAX_INPUTS
from deepline.serve.errors import BadRequest

MAX_RANK = 8  # dimensions of one tensor, batch included

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


def parse_predict_request(body: bytes) -> PredictPayload:
    """A ``:predict`` body -> its inputs, checked for form but not against any model.

    >>> parse_predict_request(b'{"instances": [[0, 255], [255, 0]]}').inputs[""].shape
    (2, 2)
    """
    try:
        doc = wire_json.loads(body)
    except (ValueError, RecursionError) as err:  # ValueError: also bytes that are not UTF-8
        raise BadRequest(f"the body is not valid JSON ({short(err)})") from None
    if not isinstance(doc, dict):
        raise BadRequest("the body must be a JSON object with 'instances' or 'inputs'")
    unknown = sorted(set(doc) - {"signature_name", "instances", "inputs"})
    if unknown:
        raise BadRequest(
            f"unknown key '{short(unknown[0])}' (allowed: signature_name, instances, inputs)"
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
    return {k: _tensor([item[k] for item in instances], f"input '{short(k)}'") for k in keys}


def _columns(inputs: Any) -> dict[str, Tensor]:
    if inputs is None:
        raise BadRequest("'inputs' is null")
    if not _is_named(inputs):
        return {"": _checked_rows(_tensor(inputs, "'inputs'"), "'inputs'")}
    if not inputs:
        raise BadRequest("'inputs' is an empty object: name at least one input")
    return {
        k: _checked_rows(_tensor(v, f"input '{short(k)}'"), f"input '{short(k)}'")
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
        raise BadRequest(f"{where} must hold numbers only, got {short(json.dumps(odd))}")
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


def short(value: Any, limit: int = 80) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."
