"""KServe V2 over real HTTP: metadata, health, JSON and binary inference (checked against a
local Predictor and against Triton's own Python client), the repository index, and every
error a client can cause."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from deepline.deploy.predictor import Predictor
from deepline.serve.server import BackgroundServer
from tests.serve.conftest import png_bytes

HEADER = "Inference-Header-Content-Length"
KINDS = {"FP32": "<f4", "UINT8": "u1", "INT64": "<i8", "INT32": "<i4"}


@pytest.fixture(scope="module")
def predictor(lenet_bundle: Path) -> Predictor:
    return Predictor(lenet_bundle)


@pytest.fixture(scope="module")
def digits(sample_digits: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return sample_digits[0][:8]  # (8, 28, 28) uint8


def image_input(pixels: np.ndarray, datatype: str = "FP32", flat: bool = True) -> dict[str, Any]:
    batch = pixels[:, None]  # (N, 1, 28, 28)
    values = batch / 255.0 if datatype == "FP32" else batch
    data = values.reshape(-1).tolist() if flat else values.tolist()
    return {"name": "input", "shape": list(batch.shape), "datatype": datatype, "data": data}


def infer(client: httpx.Client, body: dict[str, Any], path: str = "lenet") -> dict[str, Any]:
    response = client.post(f"/v2/models/{path}/infer", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()  # type: ignore[no-any-return]


def outputs(answer: dict[str, Any]) -> dict[str, np.ndarray]:
    """Response tensors by name, shaped (JSON data)."""
    return {
        o["name"]: np.array(o["data"], dtype=object if o["datatype"] == "BYTES" else None).reshape(
            o["shape"]
        )
        for o in answer["outputs"]
    }


def expected_labels(predictor: Predictor, pixels: np.ndarray) -> list[str]:
    return [answer[0]["class"] for answer in predictor.predict(list(pixels))]


def pack_bytes(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def binary_request(header: dict[str, Any], *chunks: bytes) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(header).encode()
    return head + b"".join(chunks), {
        HEADER: str(len(head)),
        "content-type": "application/octet-stream",
    }


def read_binary(response: httpx.Response) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Our own reading of a binary response (independent of the server's encoder)."""
    assert response.headers["content-type"] == "application/octet-stream"
    size = int(response.headers[HEADER])
    doc = json.loads(response.content[:size])
    tensors, position = {}, size
    for out in doc["outputs"]:
        if "data" in out:
            continue
        n = out["parameters"]["binary_data_size"]
        raw = response.content[position : position + n]
        position += n
        if out["datatype"] == "BYTES":
            items, i = [], 0
            while i < len(raw):
                (length,) = struct.unpack_from("<I", raw, i)
                items.append(raw[i + 4 : i + 4 + length].decode())
                i += 4 + length
            tensors[out["name"]] = np.array(items, dtype=object).reshape(out["shape"])
        else:
            dtype = {"FP32": "<f4", "INT64": "<i8"}[out["datatype"]]
            tensors[out["name"]] = np.frombuffer(raw, dtype=dtype).reshape(out["shape"])
    assert position == len(response.content)
    return doc, tensors


# ---------------------------------------------------------------------------- metadata, health


def test_server_metadata_and_health(client: httpx.Client) -> None:
    meta = client.get("/v2").json()
    assert meta["name"] == "deepline" and isinstance(meta["version"], str)
    assert {"binary_tensor_data", "model_repository", "classification"} <= set(meta["extensions"])
    live = client.get("/v2/health/live")
    assert live.status_code == 200 and live.json() == {"live": True}
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 200 and ready.json() == {"ready": True}


def test_model_metadata_and_versions(client: httpx.Client) -> None:
    meta = client.get("/v2/models/lenet").json()
    assert meta["name"] == "lenet" and meta["versions"] == ["1", "2"]
    assert meta["platform"] == "deepline_onnx"
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 28, 28]}]
    assert meta["outputs"] == [
        {"name": "logits", "datatype": "FP32", "shape": [-1, 10]},
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]},
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
    ]
    for version in ("1", "2"):
        assert client.get(f"/v2/models/lenet/versions/{version}").json() == meta
    small = client.get("/v2/models/digits").json()
    assert small["versions"] == ["1"] and small["inputs"][0]["shape"] == [-1, 1, 8, 8]
    for path in ("/v2/models/lenet/versions/3", "/v2/models/lenet/versions/x", "/v2/models/no"):
        missing = client.get(path)
        assert missing.status_code == 404 and missing.json()["error"]
    assert "versions: 1, 2" in client.get("/v2/models/lenet/versions/3").json()["error"]


def test_model_ready(client: httpx.Client) -> None:
    for path in ("lenet", "lenet/versions/1", "lenet/versions/2", "digits"):
        ready = client.get(f"/v2/models/{path}/ready")
        assert ready.status_code == 200 and ready.json()["ready"] is True
    assert client.get("/v2/models/lenet/ready").json()["name"] == "lenet"
    for path in ("lenet/versions/7", "nope"):
        missing = client.get(f"/v2/models/{path}/ready")
        assert missing.status_code == 404 and "error" in missing.json()


# ---------------------------------------------------------------------------- JSON inference


def test_fp32_json_agrees_with_predictor(
    client: httpx.Client, predictor: Predictor, digits: np.ndarray
) -> None:
    answer = infer(client, {"id": "req-7", "inputs": [image_input(digits, "FP32", flat=False)]})
    assert answer["model_name"] == "lenet" and answer["model_version"] == "2"
    assert answer["id"] == "req-7"
    assert [o["name"] for o in answer["outputs"]] == ["logits", "probabilities", "label"]
    got = outputs(answer)
    assert got["logits"].shape == (8, 10) and got["label"].shape == (8,)
    assert list(got["label"]) == expected_labels(predictor, digits)
    local = predictor.run(predictor.codec.decode_tensor(digits[:, None] / 255.0))
    np.testing.assert_allclose(got["logits"].astype(np.float32), local, atol=1e-5)
    np.testing.assert_allclose(got["probabilities"].astype(float).sum(1), 1.0, atol=1e-5)


def test_uint8_flat_nested_and_versions_agree(
    client: httpx.Client, predictor: Predictor, digits: np.ndarray
) -> None:
    fp32 = outputs(infer(client, {"inputs": [image_input(digits, "FP32")]}))
    flat = infer(client, {"inputs": [image_input(digits, "UINT8")]}, "lenet/versions/1")
    nested = infer(client, {"inputs": [image_input(digits, "UINT8", flat=False)]})
    assert flat["model_version"] == "1" and "id" not in flat
    for answer in (flat, nested):
        got = outputs(answer)
        np.testing.assert_allclose(
            got["logits"].astype(float), fp32["logits"].astype(float), atol=1e-5
        )
        assert list(got["label"]) == expected_labels(predictor, digits)
    # a large body (parsed off the event loop) gives the same answer
    padded = json.dumps({"inputs": [image_input(digits, "UINT8")]}).encode() + b" " * 300_000
    large = client.post("/v2/models/lenet/infer", content=padded)
    assert outputs(large.json())["label"].tolist() == expected_labels(predictor, digits)
    # grey images may leave out the channel: (N, 28, 28)
    grey = {"name": "input", "shape": [8, 28, 28], "datatype": "UINT8"}
    got = outputs(infer(client, {"inputs": [{**grey, "data": digits.reshape(-1).tolist()}]}))
    assert list(got["label"]) == expected_labels(predictor, digits)


def test_requested_outputs_and_classification(client: httpx.Client, digits: np.ndarray) -> None:
    body = {"inputs": [image_input(digits[:3])], "outputs": [{"name": "label"}]}
    answer = infer(client, body)
    assert [o["name"] for o in answer["outputs"]] == ["label"]
    assert answer["outputs"][0]["datatype"] == "BYTES" and answer["outputs"][0]["shape"] == [3]
    body["outputs"] = [{"name": "probabilities"}, {"name": "logits"}]
    assert [o["name"] for o in infer(client, body)["outputs"]] == ["probabilities", "logits"]
    body["outputs"] = [{"name": "probabilities", "parameters": {"classification": 3}}]
    ranked = infer(client, body)["outputs"][0]
    assert ranked["datatype"] == "BYTES" and ranked["shape"] == [3, 3]
    full = outputs(infer(client, {"inputs": [image_input(digits[:3])]}))
    for row, strings in enumerate(np.array(ranked["data"]).reshape(3, 3)):
        values = [float(s.split(":")[0]) for s in strings]
        assert values == sorted(values, reverse=True)
        value, index, label = strings[0].split(":")
        assert int(index) == int(np.argmax(full["probabilities"][row].astype(float)))
        assert label == full["label"][row] and float(value) == pytest.approx(max(values))


# ---------------------------------------------------------------------------- binary extension


def test_binary_request_and_response_by_hand(
    client: httpx.Client, predictor: Predictor, digits: np.ndarray
) -> None:
    pixels = digits[:, None]  # (8, 1, 28, 28) uint8
    header = {
        "id": "bin",
        "inputs": [
            {
                "name": "input",
                "shape": list(pixels.shape),
                "datatype": "UINT8",
                "parameters": {"binary_data_size": pixels.nbytes},
            }
        ],
        "outputs": [
            {"name": "logits", "parameters": {"binary_data": True}},
            {"name": "probabilities"},  # JSON, between two binary outputs
            {"name": "label", "parameters": {"binary_data": True}},
        ],
    }
    body, headers = binary_request(header, pixels.tobytes())
    response = client.post("/v2/models/lenet/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    doc, tensors = read_binary(response)
    assert doc["id"] == "bin" and doc["outputs"][1]["name"] == "probabilities"
    assert "data" in doc["outputs"][1] and "parameters" not in doc["outputs"][1]
    assert doc["outputs"][0]["parameters"]["binary_data_size"] == 8 * 10 * 4
    assert list(tensors["label"]) == expected_labels(predictor, digits)
    json_answer = outputs(infer(client, {"inputs": [image_input(digits, "UINT8")]}))
    np.testing.assert_allclose(tensors["logits"], json_answer["logits"].astype(float), atol=1e-6)

    # FP32 binary input; binary_data_output makes every output binary
    floats = (pixels / 255.0).astype("<f4")
    header2: dict[str, Any] = {
        "parameters": {"binary_data_output": True},
        "inputs": [
            {
                "name": "input",
                "shape": list(floats.shape),
                "datatype": "FP32",
                "parameters": {"binary_data_size": floats.nbytes},
            }
        ],
    }
    body, headers = binary_request(header2, floats.tobytes())
    doc, tensors = read_binary(client.post("/v2/models/lenet/infer", content=body, headers=headers))
    assert [o["name"] for o in doc["outputs"]] == ["logits", "probabilities", "label"]
    assert all("data" not in o for o in doc["outputs"])
    np.testing.assert_allclose(tensors["logits"], json_answer["logits"].astype(float), atol=1e-5)
    # a binary header with nothing binary after it is still a valid request
    body, headers = binary_request({"inputs": [image_input(digits[:1])]})
    response = client.post("/v2/models/lenet/infer", content=body, headers=headers)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"


def test_tritonclient_talks_to_us(
    server: BackgroundServer, predictor: Predictor, digits: np.ndarray
) -> None:
    """NVIDIA's own V2 client, binary in and out: the strongest proof of the protocol."""
    triton = pytest.importorskip("tritonclient.http")
    from tritonclient.utils import InferenceServerException

    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
        assert client.is_model_ready("lenet") and client.is_model_ready("lenet", "1")
        assert not client.is_model_ready("lenet", "9")
        assert client.get_model_metadata("lenet", "1")["inputs"][0]["datatype"] == "FP32"
        index = client.get_model_repository_index()
        assert [(m["name"], m["version"]) for m in index] == [
            ("digits", "1"),
            ("lenet", "1"),
            ("lenet", "2"),
        ]

        floats = (digits[:, None] / 255.0).astype(np.float32)
        tensor = triton.InferInput("input", list(floats.shape), "FP32")
        tensor.set_data_from_numpy(floats, binary_data=True)
        wanted = [
            triton.InferRequestedOutput("logits", binary_data=True),
            triton.InferRequestedOutput("label", binary_data=True),
            triton.InferRequestedOutput("probabilities", binary_data=False),
        ]
        result = client.infer("lenet", [tensor], model_version="1", outputs=wanted, request_id="t")
        assert result.get_response()["model_version"] == "1" and result.get_response()["id"] == "t"
        labels = [item.decode() for item in result.as_numpy("label")]
        assert labels == expected_labels(predictor, digits)
        local = predictor.run(predictor.codec.decode_tensor(floats))
        np.testing.assert_allclose(result.as_numpy("logits"), local, atol=1e-5)
        assert result.as_numpy("probabilities").shape == (8, 10)

        # UINT8 pixels, no outputs named: the client asks for every output in binary
        pixels = triton.InferInput("input", [8, 1, 28, 28], "UINT8")
        pixels.set_data_from_numpy(digits[:, None], binary_data=True)
        result = client.infer("lenet", [pixels])
        assert [item.decode() for item in result.as_numpy("label")] == labels
        assert result.as_numpy("logits").dtype == np.float32
        # JSON input, classification output (the client's class_count)
        pixels.set_shape([2, 1, 28, 28])
        pixels.set_data_from_numpy(digits[:2, None], binary_data=False)
        top = triton.InferRequestedOutput("probabilities", binary_data=True, class_count=2)
        ranked = client.infer("lenet", [pixels], outputs=[top]).as_numpy("probabilities")
        assert ranked.shape == (2, 2) and ranked[0, 0].decode().endswith(":" + labels[0])
        # encoded images as BYTES elements, read by the image codec like uploads
        encoded = np.array([png_bytes(image) for image in digits[:3]], dtype=np.object_)
        files = triton.InferInput("input", [3], "BYTES")
        files.set_data_from_numpy(encoded, binary_data=True)
        from_files = client.infer("lenet", [files]).as_numpy("label")
        assert [item.decode() for item in from_files] == labels[:3]

        for call, fragment in [
            (lambda: client.infer("nope", [tensor]), "no model named 'nope'"),
            (lambda: client.infer("lenet", [tensor], model_version="5"), "has no version 5"),
            (lambda: client.load_model("lenet"), "not loaded or unloaded"),
            (lambda: client.unload_model("lenet"), "not loaded or unloaded"),
        ]:
            with pytest.raises(InferenceServerException, match=fragment):
                call()
    finally:
        client.close()


# ---------------------------------------------------------------------------- repository


def test_repository_index_and_refused_loads(client: httpx.Client) -> None:
    expected = [
        {"name": "digits", "version": "1", "state": "READY", "reason": ""},
        {"name": "lenet", "version": "1", "state": "READY", "reason": ""},
        {"name": "lenet", "version": "2", "state": "READY", "reason": ""},
    ]
    assert client.post("/v2/repository/index").json() == expected
    assert client.post("/v2/repository/index", json={"ready": True}).json() == expected
    assert client.post("/v2/repository/index", json={}).json() == expected
    for bad in (b"{", b"[]", b'{"ready": "yes"}', b'{"readyy": true}'):
        response = client.post("/v2/repository/index", content=bad)
        assert response.status_code == 400 and response.json()["error"]
    for action in ("load", "unload"):
        for name in ("lenet", "unknown"):
            refused = client.post(f"/v2/repository/models/{name}/{action}", json={})
            assert refused.status_code == 403
            assert "not loaded or unloaded over HTTP" in refused.json()["error"]


# ---------------------------------------------------------------------------- errors


def _binary_case(size: int, extra: bytes = b"", length: str | None = None) -> dict[str, Any]:
    header = {
        "inputs": [
            {
                "name": "input",
                "shape": [1, 1, 28, 28],
                "datatype": "UINT8",
                "parameters": {"binary_data_size": size},
            }
        ]
    }
    body, headers = binary_request(header, bytes(784)[:size] + extra)
    if length is not None:
        headers[HEADER] = length
    return {"content": body, "headers": headers}


def _json_case(**changes: Any) -> dict[str, Any]:
    tensor = {"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": [0.5] * 784}
    body: dict[str, Any] = {"inputs": [{**tensor, **changes.pop("input", {})}], **changes}
    return {"json": body}


ERROR_CASES = {
    "unknown model": ("nope", _json_case(), 404, "no model named 'nope'"),
    "unknown version": ("lenet/versions/4", _json_case(), 404, "has no version 4"),
    "wrong datatype": (
        "lenet",
        _json_case(input={"datatype": "INT64", "data": [1] * 784}),
        400,
        "takes FP32, FP64, FP16, UINT8, BYTES, not INT64",
    ),
    "unknown datatype": ("lenet", _json_case(input={"datatype": "FLOAT"}), 400, "known: BOOL"),
    "BYTES that are no image": (
        "lenet",
        _json_case(input={"datatype": "BYTES", "shape": [1], "data": ["x"]}),
        400,
        "not a readable image",
    ),
    "BYTES in rows": (
        "lenet",
        _json_case(input={"datatype": "BYTES", "shape": [1, 1], "data": ["x"]}),
        400,
        "must have shape [N]",
    ),
    "wrong shape": ("lenet", _json_case(input={"shape": [1, 28, 1, 28]}), 400, "does not match"),
    "element count": (
        "lenet",
        _json_case(input={"data": [0.5] * 783}),
        400,
        "has 783 elements but shape [1, 1, 28, 28] holds 784",
    ),
    "strings as numbers": (
        "lenet",
        _json_case(input={"data": ["0.5"] * 784}),
        400,
        "must be numbers",
    ),
    "NaN": (
        "lenet",
        {"content": json.dumps(_json_case(input={"data": [float("nan")] * 784})["json"]).encode()},
        400,
        "NaN",
    ),
    "wrong input name": (
        "lenet",
        _json_case(input={"name": "image"}),
        400,
        "takes one input named 'input', got: image",
    ),
    "no inputs": ("lenet", {"json": {"inputs": []}}, 400, "'inputs' must be a non-empty list"),
    "bad JSON": ("lenet", {"content": b'{"inputs": ['}, 400, "not valid JSON"),
    "not an object": ("lenet", {"content": b"[1, 2]"}, 400, "must be a JSON object"),
    "unknown field": ("lenet", _json_case(inputz=1), 400, "unknown field(s) 'inputz'"),
    "unknown output": (
        "lenet",
        _json_case(outputs=[{"name": "scores"}]),
        400,
        "unknown output 'scores'",
    ),
    "classification of labels": (
        "lenet",
        _json_case(outputs=[{"name": "label", "parameters": {"classification": 2}}]),
        400,
        "no classes to rank",
    ),
    "too many classes": (
        "lenet",
        _json_case(outputs=[{"name": "logits", "parameters": {"classification": 11}}]),
        400,
        "the model has 10",
    ),
    "shared memory": (
        "lenet",
        _json_case(outputs=[{"name": "logits", "parameters": {"shared_memory_region": "r"}}]),
        400,
        "shared memory",
    ),
    "binary sizes do not add up": (
        "lenet",
        _binary_case(784, extra=b"\0" * 5),
        400,
        "add up to 784",
    ),
    "binary size wrong for shape": (
        "lenet",
        _binary_case(700),
        400,
        "binary_data_size is 700 bytes but 784 UINT8",
    ),
    "binary data cut short": (
        "lenet",
        {**_binary_case(784), "content": _binary_case(784)["content"][:-10]},
        400,
        "only 774 are left",
    ),
    "header length past the body": (
        "lenet",
        _binary_case(784, length="99999"),
        400,
        "is 99999 but the body has",
    ),
    "header length not a number": (
        "lenet",
        _binary_case(784, length="12a"),
        400,
        "must be a byte count",
    ),
    "header length cuts the JSON": ("lenet", _binary_case(784, length="10"), 400, "not valid JSON"),
    "binary size without the header": (
        "lenet",
        {
            "json": _json_case()["json"]
            | {
                "inputs": [
                    {
                        "name": "input",
                        "shape": [1],
                        "datatype": "UINT8",
                        "parameters": {"binary_data_size": 1},
                    }
                ]
            }
        },
        400,
        "has no Inference-Header-Content-Length",
    ),
    "compressed body": (
        "lenet",
        {**_json_case(), "headers": {"content-encoding": "gzip"}},
        415,
        "Content-Encoding: gzip",
    ),
}


@pytest.mark.parametrize("case", list(ERROR_CASES), ids=list(ERROR_CASES))
def test_errors_are_json_and_the_server_goes_on(
    client: httpx.Client, digits: np.ndarray, case: str
) -> None:
    path, request, status, fragment = ERROR_CASES[case]
    response = client.post(f"/v2/models/{path}/infer", **request)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert fragment in response.json()["error"]
    assert client.get("/v2/health/ready").status_code == 200
    assert infer(client, {"inputs": [image_input(digits[:1])]})["outputs"]


def test_openapi_documents_the_routes(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{name}",
        "/v2/models/{name}/versions/{version}/ready",
        "/v2/models/{name}/versions/{version}/infer",
        "/v2/repository/index",
    ):
        assert path in paths, path
    infer_doc = paths["/v2/models/{name}/infer"]["post"]
    assert infer_doc["summary"]
    schema = infer_doc["requestBody"]["content"]["application/json"]["schema"]
    assert "inputs" in schema["required"] and "$ref" not in json.dumps(schema)
