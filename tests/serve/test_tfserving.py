"""TensorFlow Serving's REST API over real HTTP: status, metadata, :predict in row and columnar
format, versions, b64 images, a language model, and every error answered as {"error": ...}."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from deepline.deploy.predictor import Predictor
from deepline.serve.app import create_app
from deepline.serve.errors import BadRequest
from deepline.serve.protocols.tfserving import generation_requests, parse_predict_request
from deepline.serve.repository import Entry
from deepline.serve.server import BackgroundServer
from deepline.serve.settings import ServeSettings
from tests.serve.conftest import png_bytes

N = 8  # digits per request: a few of the 32, over the server's max batch of 16 when doubled


def b64(data: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(data).decode()}


def predict(client: httpx.Client, body: Any, model: str = "lenet") -> httpx.Response:
    return client.post(f"/v1/models/{model}:predict", json=body)


def labels(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [p["label"] for p in response.json()["predictions"]]


@pytest.fixture(scope="module")
def local(lenet_bundle: Path) -> Predictor:
    return Predictor(lenet_bundle)


@pytest.fixture(scope="module")
def expected(local: Predictor, sample_digits: tuple[np.ndarray, np.ndarray]) -> list[str]:
    """The local Predictor's labels for the 32 digits."""
    return [a[0]["class"] for a in local.predict(list(sample_digits[0]))]


# ------------------------------------------------------------------------------- status


def test_status_of_every_version_and_of_one(client: httpx.Client) -> None:
    ok = {"error_code": "OK", "error_message": ""}
    response = client.get("/v1/models/lenet")
    assert response.status_code == 200
    assert response.json() == {
        "model_version_status": [
            {"version": v, "state": "AVAILABLE", "status": ok} for v in ("1", "2")
        ]
    }
    one = client.get("/v1/models/lenet/versions/2").json()
    assert one == {"model_version_status": [{"version": "2", "state": "AVAILABLE", "status": ok}]}
    digits = client.get("/v1/models/digits").json()["model_version_status"]
    assert [s["version"] for s in digits] == ["1"]


@pytest.mark.parametrize(
    "path", ["/v1/models/nope", "/v1/models/lenet/versions/9", "/v1/models/lenet/versions/x"]
)
def test_status_of_unknown_model_or_version_is_404(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.json()["error"]
    assert client.get(path + "/metadata").status_code == 404


# ------------------------------------------------------------------------------- metadata


def dims(info: dict[str, Any]) -> list[int]:
    assert info["tensor_shape"]["unknown_rank"] is False
    return [int(d["size"]) for d in info["tensor_shape"]["dim"]]


def test_metadata_is_a_signature_def(client: httpx.Client) -> None:
    meta = client.get("/v1/models/lenet/metadata").json()
    assert meta["model_spec"] == {"name": "lenet", "signature_name": "", "version": "2"}
    signature = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["method_name"] == "tensorflow/serving/predict"
    ((name, info),) = signature["inputs"].items()
    assert name == "input" and info["dtype"] == "DT_FLOAT" and dims(info) == [-1, 1, 28, 28]
    assert all(isinstance(d["size"], str) for d in info["tensor_shape"]["dim"])  # int64 as JSON
    outputs = signature["outputs"]
    assert {k: (v["dtype"], dims(v)) for k, v in outputs.items()} == {
        "logits": ("DT_FLOAT", [-1, 10]),
        "probabilities": ("DT_FLOAT", [-1, 10]),
        "label": ("DT_STRING", [-1]),
    }
    v1 = client.get("/v1/models/lenet/versions/1/metadata").json()
    assert v1["model_spec"]["version"] == "1"
    digits = client.get("/v1/models/digits/metadata").json()
    inputs = digits["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]
    assert dims(inputs["input"]) == [-1, 1, 8, 8]


# ------------------------------------------------------------------------------- predict


def test_instances_float_and_uint8_pixels_agree_with_predictor(
    client: httpx.Client,
    local: Predictor,
    expected: list[str],
    sample_digits: tuple[np.ndarray, np.ndarray],
) -> None:
    images, truth = sample_digits
    ints = predict(client, {"instances": images.tolist()})  # all 32: two server batches
    assert labels(ints) == expected
    assert np.mean(np.asarray(expected, dtype=int) == truth) > 0.8
    first = ints.json()["predictions"][0]
    assert set(first) == {"logits", "probabilities", "label"}
    assert len(first["logits"]) == 10 and sum(first["probabilities"]) == pytest.approx(1, 1e-4)
    local_logits = local.run(local.prepare(list(images)))
    served = np.asarray([p["logits"] for p in ints.json()["predictions"]])
    np.testing.assert_allclose(served, local_logits, atol=1e-4)

    floats = (images[:N] / 255.0).tolist()  # values in [0, 1]
    assert labels(predict(client, {"instances": floats})) == expected[:N]
    with_channel = (images[:N, None] / 255.0).tolist()  # [1, 28, 28] per instance
    assert labels(predict(client, {"instances": with_channel})) == expected[:N]
    named = [{"input": image.tolist()} for image in images[:N]]
    response = predict(client, {"signature_name": "serving_default", "instances": named})
    assert labels(response) == expected[:N]


def test_columnar_inputs_plain_and_named(
    client: httpx.Client, expected: list[str], sample_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    images = sample_digits[0][:N]
    for inputs in (images.tolist(), {"input": (images[:, None] / 255.0).tolist()}):
        response = predict(client, {"inputs": inputs})
        assert response.status_code == 200, response.text
        outputs = response.json()["outputs"]
        assert set(outputs) == {"logits", "probabilities", "label"}
        assert outputs["label"] == expected[:N]
        assert np.asarray(outputs["logits"]).shape == (N, 10)
        assert np.asarray(outputs["probabilities"]).sum(-1) == pytest.approx(np.ones(N), 1e-4)


def test_versions_one_two_and_latest(
    client: httpx.Client, expected: list[str], sample_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    body = {"instances": sample_digits[0][:N].tolist()}
    for path in ("lenet/versions/1", "lenet/versions/2", "lenet"):
        assert labels(client.post(f"/v1/models/{path}:predict", json=body)) == expected[:N]


def test_b64_png_instances(
    client: httpx.Client,
    local: Predictor,
    sample_digits: tuple[np.ndarray, np.ndarray],
) -> None:
    pngs = [png_bytes(image) for image in sample_digits[0][:4]]
    want = [a[0]["class"] for a in local.predict(pngs)]
    assert labels(predict(client, {"instances": [b64(p) for p in pngs]})) == want
    named = [{"input": b64(p)} for p in pngs]
    assert labels(predict(client, {"instances": named})) == want
    web_safe = {"b64": base64.urlsafe_b64encode(pngs[0]).decode()}
    for inputs in (web_safe, [web_safe], {"input": [web_safe]}):  # columnar
        response = predict(client, {"inputs": inputs})
        assert response.status_code == 200, response.text
        assert response.json()["outputs"]["label"] == want[:1]


def test_digits_model_is_served_beside_mnist(
    client: httpx.Client, digits_bundle: Path, local: Predictor
) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, size=(5, 8, 8))
    reference = Predictor(digits_bundle)
    want = [
        a[0]["class"]
        for a in reference.answers(reference.run(reference.codec.decode_tensor(pixels)))
    ]
    assert labels(predict(client, {"instances": pixels.tolist()}, "digits")) == want
    wrong = predict(client, {"instances": pixels.tolist()}, "lenet")  # 8x8 to a 28x28 model
    assert wrong.status_code == 400 and "28" in wrong.json()["error"]
    metrics = client.get("/metrics").text
    assert any(
        'model="digits"' in line and 'protocol="tfserving"' in line and 'status="200"' in line
        for line in metrics.splitlines()
        if line.startswith("deepline_requests_total")
    )


# ------------------------------------------------------------------------------- errors

GOOD = [[0] * 28] * 28
BAD_REQUESTS: dict[str, Any] = {
    "malformed JSON": b'{"instances": [[1, 2]',
    "not UTF-8": b'{"instances": "\xff\xfe"}',
    "a list body": [GOOD],
    "both formats": {"instances": [GOOD], "inputs": [GOOD]},
    "neither format": {"signature_name": "serving_default"},
    "unknown key": {"instances": [GOOD], "top_k": 3},
    "empty instances": {"instances": []},
    "instances not a list": {"instances": 3},
    "ragged instances": {"instances": [GOOD, [[0] * 28] * 27]},
    "ragged rows": {"instances": [[[0] * 28] * 27 + [[0] * 27]]},
    "wrong shape": {"instances": [[[0] * 27] * 28]},
    "wrong rank": {"instances": [[0] * 784]},
    "text values": {"instances": [[["a"] * 28] * 28]},
    "mixed values": {"instances": [[[0, "a"] + [0] * 26] * 28]},
    "booleans": {"instances": [[[True] * 28] * 28]},
    "nulls": {"inputs": None},
    "NaN pixels": json.dumps({"instances": [[[math.nan] * 28] * 28]}).encode(),
    "infinite pixels": json.dumps({"inputs": [[[-math.inf] * 28] * 28]}).encode(),
    "huge pixels": {"instances": [[[3e38] * 28] * 28]},  # finite, but not once normalised
    "huge number": {"instances": [[[10**30] * 28] * 28]},
    "bad base64": {"instances": [{"b64": "not base64!"}]},
    "not an image": {"instances": [b64(b"plain bytes")]},
    "object values": {"instances": [{"input": {"x": 1}}]},
    "mixed named and plain": {"instances": [{"input": GOOD}, GOOD]},
    "different names per instance": {"instances": [{"input": GOOD}, {"image": GOOD}]},
    "unknown input name": {"inputs": {"image": [GOOD]}},
    "unknown signature": {"signature_name": "classify", "instances": [GOOD]},
    "empty columnar": {"inputs": []},
    "too deep": {"instances": [[[[[[[[[[0]]]]]]]]]]},
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_requests_are_400_and_the_server_carries_on(client: httpx.Client, case: str) -> None:
    body = BAD_REQUESTS[case]
    if isinstance(body, bytes):
        response = client.post(
            "/v1/models/lenet:predict", content=body, headers={"content-type": "application/json"}
        )
    else:
        response = predict(client, body)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert isinstance(error, str) and error
    assert client.get("/v1/models/lenet").status_code == 200


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/models/nope:predict", 404),
        ("/v1/models/lenet/versions/7:predict", 404),
        ("/v1/models/lenet/versions/seven:predict", 404),
        ("/v1/models/lenet/labels/stable:predict", 404),
        ("/v1/models/lenet", 405),  # status is read with GET: 405 with Allow: GET
        ("/v1/models/lenet/metadata", 405),
        ("/v1/models/lenet:classify", 400),
    ],
)
def test_unknown_models_versions_and_endpoints(
    client: httpx.Client, path: str, status: int
) -> None:
    response = client.post(path, json={"instances": [GOOD]})
    assert response.status_code == status, response.text
    assert response.json()["error"]
    if status == 405:
        assert response.headers["allow"] == "GET"
    assert labels(predict(client, {"instances": [GOOD]}))  # still answering


# ------------------------------------------------------------------------------- the parser


def test_parser_reads_formats_and_number_kinds() -> None:
    ints = parse_predict_request(b'{"instances": [[0, 255], [255, 0]]}')
    array = ints.inputs[""]
    assert ints.row and isinstance(array, np.ndarray)
    assert array.dtype == np.int64 and array.shape == (2, 2)
    floats = parse_predict_request(b'{"inputs": {"input": [[0.5, 1], [1e-1, 0]]}}')
    assert not floats.row and np.asarray(floats.inputs["input"]).dtype == np.float64
    named = parse_predict_request(
        b'{"instances": [{"prompt": "a", "seed": 1}, {"prompt": "b", "seed": 2}]}'
    )
    assert named.inputs["prompt"] == ["a", "b"]
    assert np.asarray(named.inputs["seed"]).tolist() == [1, 2]
    binary = parse_predict_request(b'{"instances": [{"b64": "aGk="}], "signature_name": ""}')
    assert binary.inputs[""] == [b"hi"]
    with pytest.raises(BadRequest, match="ragged"):
        parse_predict_request(b'{"instances": [[1, 2], [3]]}')


def test_generation_requests_share_or_split_parameters() -> None:
    shared = parse_predict_request(b'{"inputs": {"prompt": ["a", "b"], "max_tokens": 5}}')
    assert [(r.prompt, r.max_tokens) for r in generation_requests(shared)] == [("a", 5), ("b", 5)]
    rows = parse_predict_request(
        b'{"instances": [{"prompt": "a", "top_p": 0.5}, {"prompt": "b", "top_p": 0.9}]}'
    )
    assert [r.top_p for r in generation_requests(rows)] == [0.5, 0.9]
    for body in (
        b'{"inputs": {"prompt": "a", "max_tokens": 0}}',
        b'{"inputs": {"prompt": "a", "beams": 2}}',
        b'{"inputs": {"prompt": ["a", "b"], "seed": [1, 2, 3]}}',
        b'{"instances": [[1, 2]]}',
        b'{"inputs": {"max_tokens": 3}}',
    ):
        with pytest.raises(BadRequest):
            generation_requests(parse_predict_request(body))


# ------------------------------------------------------------------------------- language model


@pytest.fixture(scope="module")
def lm_server(text_bundles: dict[str, Path]) -> Iterator[BackgroundServer]:
    """A GPT trained for two steps (its text is noise; the protocol is what is tested)."""
    entry = Entry("shakespeare", 1, text_bundles["gpt"])
    app = create_app([entry], ServeSettings(max_delay_ms=1))
    with BackgroundServer(app) as running:
        yield running


def test_language_model_answers_prompts(lm_server: BackgroundServer) -> None:
    with httpx.Client(base_url=lm_server.url, timeout=60) as client:
        meta = client.get("/v1/models/shakespeare/metadata").json()
        signature = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
        assert signature["inputs"]["prompt"]["dtype"] == "DT_STRING"
        assert signature["outputs"] == {
            "text": {
                "dtype": "DT_STRING",
                "tensor_shape": {"dim": [{"size": "-1", "name": ""}], "unknown_rank": False},
                "name": "StatefulPartitionedCall:0",
            }
        }
        rows = predict(
            client,
            {
                "instances": [
                    {"prompt": "ROMEO:", "max_tokens": 5},
                    {"prompt": "BENVOLIO:", "max_tokens": 3},
                ]
            },
            "shakespeare",
        )
        assert rows.status_code == 200, rows.text
        texts = [p["text"] for p in rows.json()["predictions"]]
        assert [len(t) for t in texts] == [5, 3]  # characters: a character-level model
        again = predict(client, {"inputs": {"prompt": ["ROMEO:"], "max_tokens": 5}}, "shakespeare")
        assert again.json() == {"outputs": {"text": texts[:1]}}  # seed 0 by default
        plain = predict(client, {"instances": ["ROMEO:"]}, "shakespeare")
        assert plain.status_code == 200 and isinstance(plain.json()["predictions"][0]["text"], str)
        for body in ({"instances": [GOOD]}, {"instances": [{"prompt": "x", "max_tokens": -1}]}):
            response = predict(client, body, "shakespeare")
            assert response.status_code == 400 and response.json()["error"]
