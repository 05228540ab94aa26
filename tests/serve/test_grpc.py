"""KServe V2 over gRPC, driven by NVIDIA's ``tritonclient.grpc``: the same answers as HTTP for
typed and raw tensors, encoded images, classification and generation; every refusal with the
right status code; the server answering on after each."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from deepline.deploy.predictor import Predictor
from deepline.serve.app import create_app
from deepline.serve.repository import add_bundle
from deepline.serve.server import BackgroundServer
from deepline.serve.settings import ServeSettings
from tests.serve.conftest import TOKEN, png_bytes


@pytest.fixture(scope="module")
def servers(
    repository: Path, text_bundles: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[BackgroundServer, str]]:
    root = tmp_path_factory.mktemp("grpc-repository")
    for name in ("lenet", "digits"):
        add_bundle(repository / name / "1", root, name)
    add_bundle(text_bundles["gpt"], root, "gpt")
    app = create_app(root, ServeSettings(grpc_port=0, max_body_bytes=512 * 1024))
    with BackgroundServer(app) as running:
        yield running, f"127.0.0.1:{app.state.grpc_port}"


@pytest.fixture(scope="module")
def client(servers: tuple[BackgroundServer, str]) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(servers[1]) as c:
        yield c


@pytest.fixture(scope="module")
def digits(sample_digits: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return sample_digits[0][:6]  # (6, 28, 28) uint8


def test_health_metadata_and_index(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("lenet")
    meta = client.get_server_metadata()
    assert meta.name == "deepline" and "classification" in meta.extensions
    model = client.get_model_metadata("lenet")
    assert model.inputs[0].datatype == "FP32" and list(model.inputs[0].shape) == [-1, 1, 28, 28]
    assert [o.name for o in model.outputs] == ["logits", "probabilities", "label"]
    index = client.get_model_repository_index()
    assert sorted((m.name, m.version, m.state) for m in index.models) == [
        ("digits", "1", "READY"), ("gpt", "1", "READY"), ("lenet", "1", "READY")]  # fmt: skip


def test_answers_equal_http_for_typed_raw_and_encoded_inputs(
    client: triton.InferenceServerClient, servers: tuple[BackgroundServer, str], digits: np.ndarray
) -> None:
    pixels = (digits[:, None] / 255.0).astype(np.float32)
    http = httpx.post(f"{servers[0].url}/v2/models/lenet/infer", json={"inputs": [
        {"name": "input", "shape": list(pixels.shape), "datatype": "FP32",
         "data": pixels.reshape(-1).tolist()}]}, timeout=30).json()  # fmt: skip
    want = {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in http["outputs"]}
    raw = triton.InferInput("input", list(pixels.shape), "FP32")
    raw.set_data_from_numpy(pixels)  # raw_input_contents
    result = client.infer("lenet", [raw], request_id="r1")
    assert result.get_response().id == "r1" and result.get_response().model_version == "1"
    np.testing.assert_allclose(result.as_numpy("logits"), want["logits"], atol=1e-6)
    labels = [item.decode() for item in result.as_numpy("label")]
    assert labels == [str(v) for v in want["label"]]
    # typed contents (fp32_contents), built by hand as other V2 clients send them
    from tritonclient.grpc import service_pb2 as pb

    typed = pb.ModelInferRequest(model_name="lenet", inputs=[pb.ModelInferRequest.InferInputTensor(
        name="input", datatype="FP32", shape=list(pixels.shape),
        contents=pb.InferTensorContents(fp32_contents=pixels.reshape(-1).tolist()))])  # fmt: skip
    answer = client._client_stub.ModelInfer(typed)
    assert [o.name for o in answer.outputs] == ["logits", "probabilities", "label"]
    logits = np.frombuffer(answer.raw_output_contents[0], dtype="<f4").reshape(6, 10)
    np.testing.assert_allclose(logits, want["logits"], atol=1e-6)
    # encoded images as BYTES, read by the image codec like uploads
    files = triton.InferInput("input", [3], "BYTES")
    files.set_data_from_numpy(np.array([png_bytes(d) for d in digits[:3]], dtype=np.object_))
    assert [i.decode() for i in client.infer("lenet", [files]).as_numpy("label")] == labels[:3]
    # the classification extension on a requested output
    top = triton.InferRequestedOutput("probabilities", class_count=2)
    ranked = client.infer("lenet", [raw], outputs=[top]).as_numpy("probabilities")
    assert ranked.shape == (6, 2) and ranked[0, 0].decode().endswith(":" + labels[0])


def test_a_language_model_continues_a_prompt(
    client: triton.InferenceServerClient, text_bundles: dict[str, Path]
) -> None:
    prompt = triton.InferInput("prompt", [1], "BYTES")
    prompt.set_data_from_numpy(np.array([b"ROMEO:"], dtype=np.object_))
    result = client.infer("gpt", [prompt], parameters={"max_tokens": 5, "seed": 3})
    text = result.as_numpy("text")[0].decode()
    assert text == Predictor(text_bundles["gpt"]).generate("ROMEO:", 5, seed=3)


@pytest.mark.parametrize(
    ("call", "code", "fragment"),
    [
        (lambda c, x: c.infer("nope", [x]), grpc.StatusCode.NOT_FOUND, "no model named 'nope'"),
        (lambda c, x: c.infer("lenet", [x], model_version="7"), grpc.StatusCode.NOT_FOUND,
         "has no version 7"),
        (lambda c, x: c.get_model_metadata("nope"), grpc.StatusCode.NOT_FOUND, "nope"),
        (lambda c, x: c.infer("lenet", [_input("input", [2, 3], "FP32")]),
         grpc.StatusCode.INVALID_ARGUMENT, "shape"),
        (lambda c, x: c.infer("lenet", [_input("input", [1, 1, 28, 28], "INT8")]),
         grpc.StatusCode.INVALID_ARGUMENT, "takes"),
        (lambda c, x: c.infer("lenet", [x], outputs=[triton.InferRequestedOutput("nothing")]),
         grpc.StatusCode.INVALID_ARGUMENT, "unknown output 'nothing'"),
        (lambda c, x: c.infer("gpt", [x]), grpc.StatusCode.INVALID_ARGUMENT, "takes one input"),
        (lambda c, x: c.load_model("lenet"), grpc.StatusCode.PERMISSION_DENIED,
         "not loaded or unloaded"),
        (lambda c, x: c.get_inference_statistics("lenet"), grpc.StatusCode.UNIMPLEMENTED, ""),
        (lambda c, x: c.infer("lenet", [_input("input", [200, 1, 28, 28], "FP32")]),
         grpc.StatusCode.RESOURCE_EXHAUSTED, ""),
    ],
)  # fmt: skip
def test_every_refusal_has_its_status_and_the_server_goes_on(
    client: triton.InferenceServerClient,
    call,
    code: grpc.StatusCode,
    fragment: str,  # type: ignore[no-untyped-def]
) -> None:
    good = _input("input", [1, 1, 28, 28], "FP32")
    with pytest.raises(InferenceServerException) as raised:
        call(client, good)
    assert raised.value.status() == str(code) and fragment in raised.value.message()
    assert client.infer("lenet", [good]).as_numpy("label").shape == (1,)


def test_raw_and_typed_contents_must_fit_their_shape(client: triton.InferenceServerClient) -> None:
    from tritonclient.grpc import service_pb2 as pb

    tensor = pb.ModelInferRequest.InferInputTensor
    short = pb.ModelInferRequest(model_name="lenet", inputs=[tensor(
        name="input", datatype="FP32", shape=[1, 1, 28, 28],
        contents=pb.InferTensorContents(fp32_contents=[0.5] * 10))])  # fmt: skip
    raw = pb.ModelInferRequest(model_name="lenet", inputs=[tensor(
        name="input", datatype="FP32", shape=[1, 1, 28, 28])],
        raw_input_contents=[b"\\0" * 12])  # fmt: skip
    for request, fragment in ((short, "has 10 elements"), (raw, "raw_input_contents is 24 bytes")):
        with pytest.raises(grpc.RpcError) as raised:
            client._client_stub.ModelInfer(request)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert fragment in raised.value.details()


def test_a_tokened_server_wants_the_token_except_for_liveness(repository: Path) -> None:
    app = create_app(repository, ServeSettings(grpc_port=0, token=TOKEN))
    with (
        BackgroundServer(app),
        triton.InferenceServerClient(f"127.0.0.1:{app.state.grpc_port}") as c,
    ):
        assert c.is_server_live()
        with pytest.raises(InferenceServerException, match="bearer token") as raised:
            c.is_server_ready()
        assert raised.value.status() == str(grpc.StatusCode.UNAUTHENTICATED)
        assert c.is_server_ready(headers={"authorization": f"Bearer {TOKEN}"})


def _input(name: str, shape: list[int], datatype: str) -> triton.InferInput:
    tensor = triton.InferInput(name, shape, datatype)
    dtype = {"FP32": np.float32, "INT8": np.int8}[datatype]
    tensor.set_data_from_numpy(np.zeros(shape, dtype=dtype))
    return tensor
