"""KServe V2 payloads without HTTP: inference requests parsed, responses encoded.

JSON tensors (``data`` flat or nested, row-major) and Triton's binary tensor data extension (a
JSON header of ``Inference-Header-Content-Length`` bytes, then each binary input's
``binary_data_size`` bytes in input order: little-endian, row-major, BYTES elements behind a
4-byte little-endian length). Everything a request can get wrong raises ``ProtocolError`` (400)
naming the field, so these functions can be fuzzed on their own.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deepline.serve import wire_json
from deepline.serve.errors import BadRequest

HEADER = "Inference-Header-Content-Length"
DATATYPES: dict[str, np.dtype[Any]] = {  # V2 name -> little-endian numpy type
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),  # elements are bytes
}
MAX_DIMS = 16
MAX_TENSORS = 64
SHARED_MEMORY = ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset")


class ProtocolError(BadRequest):
    """A V2 request that cannot be read (answered 400 with ``{"error": ...}``)."""


@dataclass
class InferInput:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray  # shaped like ``shape``; BYTES: an object array of bytes


@dataclass
class RequestedOutput:
    name: str
    binary: bool | None = None  # None: as the request's ``binary_data_output`` says
    classification: int | None = None  # top k as "value:index:label" strings


@dataclass
class InferRequest:
    inputs: list[InferInput]
    outputs: list[RequestedOutput] | None = None  # None: every output
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def binary_output(self) -> bool:
        return self.parameters.get("binary_data_output") is True


@dataclass
class OutputTensor:
    name: str
    datatype: str
    data: np.ndarray
    binary: bool = False


# -- parsing (pure) --------------------------------------------------------------------------


def parse_header_length(value: str | None) -> int | None:
    """The ``Inference-Header-Content-Length`` header as a number (None when absent)."""
    if value is None:
        return None
    text = value.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 18):
        raise ProtocolError(f"{HEADER} must be a byte count, got '{value[:40]}'")
    return int(text)


def parse_infer_request(body: bytes, header_length: int | None = None) -> InferRequest:
    """A V2 inference request: JSON, or (with ``header_length``) a JSON header of that many
    bytes followed by the binary data of the inputs that give ``binary_data_size``, in order.

    Raises ProtocolError, naming the field, for anything it cannot read.
    """
    if header_length is None:
        header, binary = body, b""
    elif not 0 < header_length <= len(body):
        raise ProtocolError(
            f"{HEADER} is {header_length} but the body has {len(body)} bytes"
            if header_length
            else f"{HEADER} must be above 0"
        )
    else:
        header, binary = body[:header_length], body[header_length:]
    doc = _json_object(header, "the inference request")
    _known_keys(doc, ("id", "parameters", "inputs", "outputs", "model_name", "model_version"),
                "the inference request")  # fmt: skip
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError("'id' must be a string")
    parameters = _parameters(doc.get("parameters"), "the request's 'parameters'")
    if not isinstance(parameters.get("binary_data_output", False), bool):
        raise ProtocolError("parameter 'binary_data_output' must be true or false")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise ProtocolError("'inputs' must be a non-empty list of tensors")
    if len(raw_inputs) > MAX_TENSORS:
        raise ProtocolError(f"at most {MAX_TENSORS} inputs, got {len(raw_inputs)}")
    inputs: list[InferInput] = []
    offset = 0
    for index, raw in enumerate(raw_inputs):
        name, datatype, shape, size = _input_header(raw, index)
        if any(given.name == name for given in inputs):
            raise ProtocolError(f"input '{name}' is given twice")
        if size is None:
            data = _json_data(raw["data"], datatype, shape, name)
        elif header_length is None:
            raise ProtocolError(
                f"input '{name}' gives binary_data_size but the request has no {HEADER} header"
            )
        elif offset + size > len(binary):
            raise ProtocolError(
                f"input '{name}' needs {size} bytes of binary data but only "
                f"{len(binary) - offset} are left in the body"
            )
        else:
            data = binary_tensor(binary[offset : offset + size], datatype, shape, name)
            offset += size
        inputs.append(InferInput(name, datatype, shape, data))
    if offset != len(binary):
        raise ProtocolError(
            f"the body has {len(binary)} bytes after the JSON header but the inputs' "
            f"binary_data_size add up to {offset}"
        )
    return InferRequest(inputs, _requested_outputs(doc.get("outputs")), request_id, parameters)


def parse_index_request(body: bytes) -> bool:
    """A repository index request (empty, or ``{"ready": bool}``) -> only ready models?"""
    if not body:  # no body; whitespace alone is not JSON
        return False
    doc = _json_object(body, "the index request")
    _known_keys(doc, ("ready", "repository_name"), "the index request")
    ready = doc.get("ready", False)
    if not isinstance(ready, bool):
        raise ProtocolError("'ready' must be true or false")
    if not isinstance(doc.get("repository_name", ""), (str, type(None))):
        raise ProtocolError("'repository_name' must be a string")
    return ready


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        doc = wire_json.loads(raw)
    except (ValueError, RecursionError) as err:  # bad JSON or UTF-8, too deep, huge numbers
        raise ProtocolError(f"{what} is not valid JSON ({str(err)[:200]})") from None
    if not isinstance(doc, dict):
        raise ProtocolError(f"{what} must be a JSON object, got {type(doc).__name__}")
    return doc


def _known_keys(doc: dict[str, Any], allowed: Sequence[str], what: str) -> None:
    unknown = sorted(set(doc) - set(allowed))
    if unknown:
        raise ProtocolError(
            f"{what} has unknown field(s) {', '.join(map(repr, unknown[:5]))}; "
            f"known: {', '.join(allowed)}"
        )


def _parameters(raw: Any, what: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ProtocolError(f"{what} must be an object")
    shared = [key for key in SHARED_MEMORY if key in raw]
    if shared:
        raise ProtocolError(f"{what}: shared memory ({shared[0]}) is not supported over HTTP")
    return raw


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _input_header(raw: Any, index: int) -> tuple[str, str, tuple[int, ...], int | None]:
    """(name, datatype, shape, binary_data_size or None) of one request input."""
    if not isinstance(raw, dict):
        raise ProtocolError(f"inputs[{index}] must be an object")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ProtocolError(f"inputs[{index}] needs a 'name' string")
    _known_keys(raw, ("name", "shape", "datatype", "parameters", "data"), f"input '{name}'")
    datatype = raw.get("datatype")
    if datatype not in DATATYPES:
        raise ProtocolError(
            f"input '{name}' has datatype {json.dumps(datatype)[:40]}; "
            f"known: {', '.join(DATATYPES)}"
        )
    shape = raw.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_DIMS
        or not all(_is_int(d) and 0 <= d < 2**63 for d in shape)
    ):
        raise ProtocolError(
            f"input '{name}' needs a 'shape': a list of at most {MAX_DIMS} sizes >= 0"
        )
    if math.prod(max(d, 1) for d in shape) >= 2**58:  # numpy refuses such shapes, even empty
        raise ProtocolError(f"input '{name}': shape {list(shape)} is too large")
    parameters = _parameters(raw.get("parameters"), f"input '{name}' parameters")
    size = parameters.get("binary_data_size")
    if size is not None:
        if not _is_int(size) or size < 0:
            raise ProtocolError(f"input '{name}': binary_data_size must be a byte count")
        if "data" in raw:
            raise ProtocolError(f"input '{name}' gives both 'data' and binary_data_size")
    elif "data" not in raw:
        raise ProtocolError(f"input '{name}' needs 'data' (or binary_data_size)")
    return name, str(datatype), tuple(shape), size


def _flatten(data: Any, name: str) -> list[Any]:
    """Nested (row-major) or flat tensor data -> its elements, without recursion."""
    if not isinstance(data, list):
        raise ProtocolError(f"input '{name}': 'data' must be a list")
    if list not in set(map(type, data)):  # already flat: nothing to walk
        return data
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                if len(stack) >= MAX_DIMS:
                    raise ProtocolError(f"input '{name}': 'data' is nested too deeply")
                if list not in set(map(type, item)):  # an innermost row: taken whole
                    flat.extend(item)
                    continue
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _json_data(data: Any, datatype: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    flat = _flatten(data, name)
    count = math.prod(shape)
    if len(flat) != count:
        raise ProtocolError(
            f"input '{name}' has {len(flat)} elements but shape {list(shape)} holds {count}"
        )
    kinds = set(map(type, flat))  # exact types: a JSON true is a bool, not an int
    if datatype == "BYTES":
        if not kinds <= {str}:
            raise ProtocolError(f"input '{name}': BYTES elements in JSON must be strings")
        array = np.empty(count, dtype=object)
        array[:] = [v.encode("utf-8", "surrogatepass") for v in flat]
        return array.reshape(shape)
    if datatype == "BOOL":
        ok = kinds <= {bool}
    elif datatype.startswith(("INT", "UINT")):
        ok = kinds <= {int}
    else:
        ok = kinds <= {int, float}
    if not ok:
        kind = {"BOOL": "true/false"}.get(datatype, "integers" if "INT" in datatype else "numbers")
        raise ProtocolError(f"input '{name}' is {datatype}: its elements must be {kind}")
    try:
        with np.errstate(all="ignore"):  # FP16 overflow becomes inf, refused later
            return np.array(flat, dtype=DATATYPES[datatype]).reshape(shape)
    except OverflowError:
        raise ProtocolError(f"input '{name}' has values outside {datatype}") from None


def binary_tensor(chunk: bytes, datatype: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    count = math.prod(shape)
    if datatype == "BYTES":
        items = _unpack_bytes(chunk, name)
        if len(items) != count:
            raise ProtocolError(
                f"input '{name}' has {len(items)} BYTES elements but shape {list(shape)} "
                f"holds {count}"
            )
        array = np.empty(count, dtype=object)
        array[:] = items
        return array.reshape(shape)
    dtype = DATATYPES[datatype]
    if len(chunk) != count * dtype.itemsize:
        raise ProtocolError(
            f"input '{name}': binary_data_size is {len(chunk)} bytes but {count} {datatype} "
            f"elements take {count * dtype.itemsize}"
        )
    if count == 0:
        return np.zeros(shape, dtype=dtype)
    if datatype == "BOOL" and np.frombuffer(chunk, dtype=np.uint8).max() > 1:
        raise ProtocolError(f"input '{name}': BOOL bytes must be 0 or 1")
    return np.frombuffer(chunk, dtype=dtype).reshape(shape)


def _unpack_bytes(chunk: bytes, name: str) -> list[bytes]:
    """BYTES binary data: each element a 4-byte little-endian length, then its bytes."""
    items: list[bytes] = []
    position = 0
    while position < len(chunk):
        if position + 4 > len(chunk):
            raise ProtocolError(f"input '{name}': a BYTES length prefix is cut off")
        (length,) = struct.unpack_from("<I", chunk, position)
        position += 4
        if position + length > len(chunk):
            raise ProtocolError(f"input '{name}': a BYTES element runs past its data")
        items.append(chunk[position : position + length])
        position += length
    return items


def _requested_outputs(raw: Any) -> list[RequestedOutput] | None:
    if raw is None or raw == []:
        return None
    if not isinstance(raw, list) or len(raw) > MAX_TENSORS:
        raise ProtocolError(f"'outputs' must be a list of at most {MAX_TENSORS} objects")
    outputs: list[RequestedOutput] = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ProtocolError(f"outputs[{index}] must be an object with a 'name' string")
        name = item["name"]
        _known_keys(item, ("name", "parameters"), f"output '{name}'")
        parameters = _parameters(item.get("parameters"), f"output '{name}' parameters")
        binary = parameters.get("binary_data")
        if binary is not None and not isinstance(binary, bool):
            raise ProtocolError(f"output '{name}': binary_data must be true or false")
        top = parameters.get("classification")
        if top is not None and (not _is_int(top) or top < 1):
            raise ProtocolError(f"output '{name}': classification must be a count >= 1")
        if any(o.name == name for o in outputs):
            raise ProtocolError(f"output '{name}' is requested twice")
        outputs.append(RequestedOutput(name, binary, top))
    return outputs


# -- outputs and encoding (pure) -------------------------------------------------------------


def plan_outputs(
    request: InferRequest,
    specs: Sequence[dict[str, Any]],
    classes: Mapping[str, Sequence[str]] | None = None,
) -> list[RequestedOutput]:
    """The outputs to answer, each with ``binary`` decided; checked against the model's output
    specs ({"name", "datatype", "shape"}) before anything runs. ``classes`` names the outputs
    that score classes (the classification extension ranks only those); without it, any
    numeric (N, K) output may be ranked."""
    known = {spec["name"]: spec for spec in specs}
    wanted = request.outputs or [RequestedOutput(spec["name"]) for spec in specs]
    plan = []
    for out in wanted:
        spec = known.get(out.name)
        if spec is None:
            raise ProtocolError(f"unknown output '{out.name}'; the model has: {', '.join(known)}")
        if out.classification is not None:
            rankable = spec["datatype"] != "BYTES" and len(spec["shape"]) == 2
            if classes is not None:
                rankable = rankable and out.name in classes
            count = spec["shape"][-1] if rankable else -1
            if count < 1:
                raise ProtocolError(f"output '{out.name}' has no classes to rank")
            if out.classification > count:
                raise ProtocolError(
                    f"output '{out.name}': classification asks for {out.classification} "
                    f"classes, the model has {count}"
                )
        binary = request.binary_output if out.binary is None else out.binary
        plan.append(RequestedOutput(out.name, binary, out.classification))
    return plan


def build_outputs(
    plan: Sequence[RequestedOutput],
    tensors: dict[str, np.ndarray],
    specs: Sequence[dict[str, Any]],
    classes: Mapping[str, Sequence[str]] | None = None,
) -> list[OutputTensor]:
    """The planned outputs as tensors; a ranked one holds "value:index:label" strings."""
    datatypes = {spec["name"]: spec["datatype"] for spec in specs}
    outputs = []
    for out in plan:
        data, datatype = tensors[out.name], datatypes[out.name]
        if out.classification is not None:
            labels = (classes or {}).get(out.name, ())
            data, datatype = _classify(data, out.classification, labels), "BYTES"
        outputs.append(OutputTensor(out.name, datatype, data, bool(out.binary)))
    return outputs


def _classify(values: np.ndarray, k: int, classes: Sequence[str]) -> np.ndarray:
    """(N, K) scores -> (N, k) strings "value:index:label", highest first (Triton's format)."""
    top = np.argsort(-values, axis=-1, kind="stable")[:, :k]
    rows = [
        [f"{row[i]}:{i}" + (f":{classes[i]}" if i < len(classes) else "") for i in order]
        for row, order in zip(values, top)
    ]
    return np.array(rows, dtype=object).reshape(len(values), k)


def encode_response(
    model_name: str,
    model_version: int | str,
    outputs: Sequence[OutputTensor],
    request_id: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The response body and headers: JSON, or a JSON header followed by the binary outputs
    in order (``Inference-Header-Content-Length`` gives the header's size)."""
    doc: dict[str, Any] = {"model_name": model_name, "model_version": str(model_version)}
    if request_id is not None:
        doc["id"] = request_id
    entries, chunks = [], []
    finite = True
    for out in outputs:
        entry: dict[str, Any] = {
            "name": out.name,
            "datatype": out.datatype,
            "shape": list(out.data.shape),
        }
        if out.binary:
            raw = to_binary(out.data, out.datatype)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = _to_json(out.data, out.datatype)
            if out.data.dtype.kind == "f":
                finite = finite and bool(np.isfinite(out.data).all())
        entries.append(entry)
    doc["outputs"] = entries
    header = wire_json.dumps(doc, finite)
    if not chunks:
        return header, {"content-type": "application/json"}
    headers = {"content-type": "application/octet-stream", HEADER: str(len(header))}
    return header + b"".join(chunks), headers


def _as_bytes(item: Any) -> bytes:
    return item if isinstance(item, bytes) else str(item).encode()


def _to_json(data: np.ndarray, datatype: str) -> list[Any]:
    flat = data.reshape(-1)
    if datatype == "BYTES":
        return [_as_bytes(v).decode("utf-8", "replace") for v in flat]
    return flat.astype(DATATYPES[datatype]).tolist()


def to_binary(data: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        items = [_as_bytes(v) for v in data.reshape(-1)]
        return b"".join(struct.pack("<I", len(item)) + item for item in items)
    return np.ascontiguousarray(data, dtype=DATATYPES[datatype]).tobytes()
