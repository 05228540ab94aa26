"""The V2 payload parser and encoder under Hypothesis: whatever the bytes, the parser answers
an InferRequest or a ProtocolError (a 400), never anything else; what it accepts is what was
sent; and responses decode with Triton's own client code."""

from __future__ import annotations

import contextlib
import json
import math
import struct
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepline.serve.protocols.kserve_payload import (
    DATATYPES,
    InferRequest,
    OutputTensor,
    ProtocolError,
    RequestedOutput,
    encode_response,
    parse_header_length,
    parse_index_request,
    parse_infer_request,
    plan_outputs,
)

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NUMERIC = [name for name in DATATYPES if name != "BYTES"]
SPECS: list[dict[str, Any]] = [
    {"name": "logits", "datatype": "FP32", "shape": [-1, 3]},
    {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
    {"name": "label", "datatype": "BYTES", "shape": [-1]},
]


def parse_or_refuse(body: bytes, length: int | None) -> InferRequest | None:
    try:
        return parse_infer_request(body, length)
    except ProtocolError as err:
        assert err.status == 400 and err.message
        return None


def check_parsed(request: InferRequest) -> None:
    """What the parser accepts is self-consistent: data shaped like 'shape', typed as said."""
    assert request.inputs
    for tensor in request.inputs:
        assert tensor.data.shape == tensor.shape
        assert tensor.data.dtype == DATATYPES[tensor.datatype]
        if tensor.datatype == "BYTES":
            assert all(isinstance(item, bytes) for item in tensor.data.reshape(-1))


# ---------------------------------------------------------------------------- raw bytes


@FUZZ
@given(body=st.binary(max_size=400), length=st.none() | st.integers(-3, 420))
def test_arbitrary_bytes_are_refused_cleanly(body: bytes, length: int | None) -> None:
    parsed = parse_or_refuse(body, length)
    if parsed is not None:
        check_parsed(parsed)


@FUZZ
@given(value=st.text(max_size=30))
def test_header_length_is_a_count_or_a_400(value: str) -> None:
    try:
        length = parse_header_length(value)
    except ProtocolError:
        return
    assert isinstance(length, int) and length >= 0


@FEW
@given(body=st.binary(max_size=60) | st.from_regex(rb"\A\{\"ready\": ?(true|false|1|\"x\")\}\Z"))
def test_index_request(body: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        assert parse_index_request(body) in (True, False)


# ---------------------------------------------------------------------------- structured junk

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=5)
)
json_data = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=4), max_leaves=30)
dims = st.lists(st.integers(-2, 5) | st.sampled_from([True, 2**64, 1.5]), max_size=4)
datatypes = st.sampled_from([*DATATYPES, "FLOAT", "", "fp32"]) | json_leaf


@st.composite
def junk_input(draw: st.DrawFn) -> dict[str, Any]:
    tensor: dict[str, Any] = {"name": draw(st.sampled_from(["input", "x", ""]) | json_leaf)}
    for key, strategy in (
        ("shape", dims | json_leaf),
        ("datatype", datatypes),
        ("data", json_data),
    ):
        if draw(st.integers(0, 9)):  # usually present
            tensor[key] = draw(strategy)
    if draw(st.booleans()):
        size = st.integers(-1, 64) | json_leaf
        tensor["parameters"] = draw(
            st.fixed_dictionaries({}, optional={"binary_data_size": size, "other": json_leaf})
            | json_leaf
        )
    if draw(st.integers(0, 20)) == 0:
        tensor["unexpected"] = 1
    return tensor


@st.composite
def junk_request(draw: st.DrawFn) -> tuple[bytes, int | None]:
    doc: dict[str, Any] = {"inputs": draw(st.lists(junk_input(), max_size=3) | json_leaf)}
    if draw(st.booleans()):
        doc["id"] = draw(st.text(max_size=5) | json_leaf)
    if draw(st.booleans()):
        doc["parameters"] = draw(
            st.fixed_dictionaries({}, optional={"binary_data_output": json_leaf}) | json_leaf
        )
    if draw(st.booleans()):
        output = st.fixed_dictionaries(
            {"name": st.sampled_from(["logits", "label", "nope"]) | json_leaf},
            optional={
                "parameters": st.fixed_dictionaries(
                    {}, optional={"binary_data": json_leaf, "classification": json_leaf}
                )
            },
        )
        doc["outputs"] = draw(st.lists(output, max_size=3) | json_leaf)
    header = json.dumps(doc).encode()
    tail = draw(st.binary(max_size=80))
    if draw(st.booleans()):
        return header, None
    return header + tail, draw(st.sampled_from([len(header), len(header) + 1, 0]))


@FUZZ
@given(request=junk_request())
def test_structured_junk_is_refused_cleanly(request: tuple[bytes, int | None]) -> None:
    parsed = parse_or_refuse(*request)
    if parsed is not None:
        check_parsed(parsed)
        try:
            plan = plan_outputs(parsed, SPECS)
        except ProtocolError:
            return
        assert {out.name for out in plan} <= {"logits", "probabilities", "label"}
        assert all(isinstance(out.binary, bool) for out in plan)


# ---------------------------------------------------------------------------- valid tensors


@st.composite
def tensors(draw: st.DrawFn) -> tuple[str, np.ndarray]:
    datatype = draw(st.sampled_from(list(DATATYPES)))
    shape = tuple(draw(st.lists(st.integers(0, 3), min_size=1, max_size=3)))
    count = math.prod(shape)
    if datatype == "BYTES":
        items = draw(st.lists(st.binary(max_size=6), min_size=count, max_size=count))
        array = np.empty(count, dtype=object)
        array[:] = items
        return datatype, array.reshape(shape)
    dtype = DATATYPES[datatype]
    raw = draw(st.binary(min_size=count * dtype.itemsize, max_size=count * dtype.itemsize))
    array = np.frombuffer(raw, dtype=dtype).copy()
    if datatype == "BOOL":
        array = np.frombuffer(raw, dtype=np.uint8) % 2 == 1
    return datatype, array.reshape(shape)


def binary_of(datatype: str, array: np.ndarray) -> bytes:
    """An independent encoder, written from the extension's text."""
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(b)) + b for b in array.reshape(-1))
    return array.astype(DATATYPES[datatype]).tobytes()


@FUZZ
@given(inputs=st.lists(tensors(), min_size=1, max_size=3), as_json=st.lists(st.booleans()))
def test_binary_and_json_inputs_arrive_unchanged(
    inputs: list[tuple[str, np.ndarray]], as_json: list[bool]
) -> None:
    header: dict[str, Any] = {"inputs": []}
    chunks = []
    for i, (datatype, array) in enumerate(inputs):
        tensor: dict[str, Any] = {
            "name": f"in{i}",
            "shape": list(array.shape),
            "datatype": datatype,
        }
        # JSON carries finite numbers and UTF-8 text only; the rest goes binary
        floats = datatype in ("FP16", "FP32", "FP64")
        jsonable = datatype != "BYTES" and (not floats or bool(np.isfinite(array).all()))
        if i < len(as_json) and as_json[i] and jsonable:
            tensor["data"] = array.tolist()
        else:
            raw = binary_of(datatype, array)
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        header["inputs"].append(tensor)
    head = json.dumps(header).encode()
    parsed = parse_infer_request(head + b"".join(chunks), len(head))
    check_parsed(parsed)
    for got, (datatype, array) in zip(parsed.inputs, inputs):
        assert got.datatype == datatype and got.shape == array.shape
        if datatype == "BYTES":
            assert got.data.tolist() == array.tolist()
        else:
            np.testing.assert_array_equal(got.data, array)
    # one byte more or less and the sizes no longer add up
    if b"".join(chunks):
        for body in (head + b"".join(chunks) + b"\0", head + b"".join(chunks)[:-1]):
            with pytest.raises(ProtocolError):
                parse_infer_request(body, len(head))


@FEW
@given(
    outputs=st.lists(tensors().filter(lambda t: t[0] != "BOOL"), min_size=1, max_size=3),
    binary=st.lists(st.booleans(), min_size=3, max_size=3),
    request_id=st.none() | st.text(max_size=8),
)
def test_responses_decode_with_tritonclient(
    outputs: list[tuple[str, np.ndarray]], binary: list[bool], request_id: str | None
) -> None:
    """Triton's client reads what we encode (binary or JSON, BYTES included)."""
    http = pytest.importorskip("tritonclient.http")
    sent = []
    for i, (datatype, array) in enumerate(outputs):
        if datatype in ("FP16", "FP32", "FP64"):
            array = np.nan_to_num(array, nan=0.0, posinf=1.0, neginf=-1.0)
        if datatype == "BYTES" and not binary[i]:
            array = np.array(
                [b.decode("latin-1").encode() for b in array.reshape(-1)], dtype=object
            ).reshape(array.shape)
        sent.append(OutputTensor(f"out{i}", datatype, array, binary[i]))
    body, headers = encode_response("m", 3, sent, request_id)
    length = headers.get("Inference-Header-Content-Length")
    result = http.InferResult.from_response_body(body, header_length=length and int(length))
    response = result.get_response()
    assert response["model_name"] == "m" and response["model_version"] == "3"
    assert response.get("id") == request_id
    for tensor in sent:
        got = result.as_numpy(tensor.name)
        assert got.shape == tensor.data.shape
        if tensor.datatype == "BYTES":
            assert [
                bytes(x) if not isinstance(x, str) else x.encode() for x in got.reshape(-1)
            ] == list(tensor.data.reshape(-1))
        else:
            np.testing.assert_array_equal(got, tensor.data.astype(DATATYPES[tensor.datatype]))


@FEW
@given(
    wanted=st.lists(
        st.builds(
            RequestedOutput,
            st.sampled_from(["logits", "probabilities", "label", "other"]),
            st.none() | st.booleans(),
            st.none() | st.integers(1, 5),
        ),
        max_size=3,
        unique_by=lambda o: o.name,
    ),
    binary_output=st.booleans(),
)
def test_output_plans(wanted: list[RequestedOutput], binary_output: bool) -> None:
    request = InferRequest([], wanted or None, None, {"binary_data_output": binary_output})
    try:
        plan = plan_outputs(request, SPECS)
    except ProtocolError as err:
        assert any(
            o.name == "other" or (o.classification and (o.name == "label" or o.classification > 3))
            for o in wanted
        ), err
        return
    assert [o.name for o in plan] == ([o.name for o in wanted] or [s["name"] for s in SPECS])
    for out, asked in zip(plan, wanted):
        assert out.binary is (binary_output if asked.binary is None else asked.binary)


def test_a_shape_too_large_for_any_array_is_a_400(client: httpx.Client) -> None:
    """An empty tensor whose other sizes multiply past what numpy can shape (found by
    schemathesis): a 400 in V2's own format, not a 500."""
    shape = [454, 409, 54654, 127, 8145, 0, 17780, 77, 1286, 435, 84, 54179512030]
    body = {"inputs": [{"name": "input", "shape": shape, "data": [], "datatype": "BYTES"}]}
    response = client.post("/v2/models/digits/versions/1/infer", json=body)
    assert response.status_code == 400 and "too large" in response.json()["error"]
