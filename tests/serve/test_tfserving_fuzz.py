"""Fuzzing TF Serving's :predict: any body is parsed or refused with BadRequest (never another
error), parsed tensors are accepted or refused with InputError by the model's preparation, and
random bodies over real HTTP are answered 2xx or 4xx, never 5xx."""

from __future__ import annotations

import base64
import contextlib
import json
import math
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from deepline.deploy.predictor import Predictor
from deepline.errors import InputError
from deepline.serve.errors import BadRequest
from deepline.serve.protocols.tfserving import generation_requests
from deepline.serve.protocols.tfserving_payload import PredictPayload, parse_predict_request

KEYS = ["instances", "inputs", "signature_name", "b64", "input", "prompt", "max_tokens", "seed"]

binary = st.binary(max_size=16).map(lambda b: {"b64": base64.b64encode(b).decode()})
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | binary
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=30,
)
# rectangular numbers, some shaped like the digits model's input ([N, 8, 8] or [N, 1, 8, 8])
tensors = st.one_of(
    arrays(np.int64, array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)),
    arrays(np.float64, array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)),
    arrays(np.float64, st.sampled_from([(1, 8, 8), (2, 1, 8, 8), (1, 8, 7)])),
    arrays(np.int64, st.sampled_from([(2, 8, 8), (1, 1, 8, 8)])),
).map(lambda a: a.tolist())
bodies = st.one_of(
    values,
    st.fixed_dictionaries({"instances": values | tensors}),
    st.fixed_dictionaries({"inputs": values | tensors}, optional={"signature_name": values}),
    st.fixed_dictionaries({"instances": st.lists(st.fixed_dictionaries({"input": tensors}))}),
)
FUZZ = settings(max_examples=200, deadline=None)


def _dumps(body: Any) -> bytes:
    return json.dumps(body).encode()  # NaN and Infinity as bare tokens, as TF Serving allows


def parse(raw: bytes) -> PredictPayload | None:
    try:
        return parse_predict_request(raw)
    except BadRequest as err:
        assert err.status == 400 and err.message
        return None


@FUZZ
@given(bodies)
def test_any_json_parses_or_is_a_bad_request(body: Any) -> None:
    payload = parse(_dumps(body))
    if payload is None:
        return
    assert payload.inputs and isinstance(payload.row, bool)
    for tensor in payload.inputs.values():
        if isinstance(tensor, np.ndarray):
            assert tensor.dtype in (np.int64, np.float64)
    with contextlib.suppress(BadRequest):  # the language-model reading of the same payload
        generation_requests(payload)


@FUZZ
@given(st.binary(max_size=200) | st.text(max_size=100).map(str.encode))
def test_any_bytes_parse_or_are_a_bad_request(raw: bytes) -> None:
    parse(raw)


@pytest.fixture(scope="module")
def digits(digits_bundle: Path) -> Predictor:
    return Predictor(digits_bundle)


@FUZZ
@given(tensors)
def test_parsed_tensors_are_prepared_or_refused_with_input_error(
    digits: Predictor, tensor: Any
) -> None:
    payload = parse(_dumps({"inputs": tensor}))
    if payload is None or not isinstance(payload.inputs[""], np.ndarray):
        return
    try:
        batch = digits.prepare_named(payload.inputs)
    except InputError:
        return
    assert batch.shape[1:] == (1, 8, 8) and np.isfinite(batch).all()


http_bodies = st.one_of(
    bodies.map(_dumps),
    st.binary(max_size=64),
    st.sampled_from([math.nan, math.inf, 255, 0.5, -1]).map(
        lambda v: _dumps({"instances": [[[v] * 8] * 8]})
    ),
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=http_bodies, model=st.sampled_from(["digits", "lenet", "lenet/versions/1"]))
def test_random_bodies_over_http_are_never_a_server_error(
    client: httpx.Client, raw: bytes, model: str
) -> None:
    response = client.post(
        f"/v1/models/{model}:predict", content=raw, headers={"content-type": "application/json"}
    )
    assert 200 <= response.status_code < 500, response.text
    assert response.headers["content-type"].startswith("application/json")
    if response.status_code >= 400:
        assert response.json()["error"]
