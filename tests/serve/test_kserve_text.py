"""KServe V2 with text models: a language model answering BYTES prompts, and a text classifier
reading texts or token ids, both against the local Predictor."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from deepline.deploy.predictor import Predictor
from deepline.serve.app import create_app
from deepline.serve.repository import add_bundle
from deepline.serve.server import BackgroundServer
from deepline.serve.settings import ServeSettings
from tests.serve.test_kserve import binary_request, infer, outputs, pack_bytes, read_binary


@pytest.fixture(scope="module")
def text_client(
    text_bundles: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    repository = tmp_path_factory.mktemp("kserve-text-repository")
    for name, bundle in text_bundles.items():
        add_bundle(bundle, repository, name)
    app = create_app(repository, ServeSettings(max_batch_size=4))
    with BackgroundServer(app) as running, httpx.Client(base_url=running.url, timeout=60) as c:
        yield c


def test_language_model_prompts(text_client: httpx.Client, text_bundles: dict[str, Path]) -> None:
    meta = text_client.get("/v2/models/gpt").json()
    assert meta["inputs"] == [{"name": "prompt", "datatype": "BYTES", "shape": [-1]}]
    assert meta["outputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    local = Predictor(text_bundles["gpt"])
    body = {
        "parameters": {"max_tokens": 12, "seed": 3, "temperature": 0.9, "top_k": 20},
        "inputs": [{"name": "prompt", "shape": [1], "datatype": "BYTES", "data": ["ROMEO:"]}],
    }
    answer = infer(text_client, body, "gpt")
    text = answer["outputs"][0]
    assert text["name"] == "text" and text["datatype"] == "BYTES" and text["shape"] == [1]
    assert text["data"] == [local.generate("ROMEO:", 12, seed=3, temperature=0.9, top_k=20)]

    # two prompts as binary BYTES, the answer as binary BYTES
    prompts = [b"ROMEO:", b"BENVOLIO:\n"]
    header = {
        "parameters": {"max_tokens": 5, "seed": 1},
        "inputs": [
            {
                "name": "prompt",
                "shape": [2],
                "datatype": "BYTES",
                "parameters": {"binary_data_size": len(pack_bytes(prompts))},
            }
        ],
        "outputs": [{"name": "text", "parameters": {"binary_data": True}}],
    }
    body_bytes, headers = binary_request(header, pack_bytes(prompts))
    response = text_client.post("/v2/models/gpt/infer", content=body_bytes, headers=headers)
    assert response.status_code == 200, response.text
    _, tensors = read_binary(response)
    assert list(tensors["text"]) == [local.generate(p.decode(), 5, seed=1) for p in prompts]

    for parameters, fragment in [
        ({"temperature": 0}, "temperature"),
        ({"max_tokens": "many"}, "max_tokens"),
        ({"top_p": 2.0}, "top_p"),
    ]:
        bad = text_client.post("/v2/models/gpt/infer", json={**body, "parameters": parameters})
        assert bad.status_code == 400 and fragment in bad.json()["error"]
    dash = {"name": "prompt", "shape": [1], "datatype": "BYTES", "data": ["BENVOLIO \u2014"]}
    bad = text_client.post("/v2/models/gpt/infer", json={"inputs": [dash]})
    assert bad.status_code == 400 and "not in this tokenizer's vocabulary" in bad.json()["error"]
    numbers = {"name": "prompt", "shape": [1], "datatype": "FP32", "data": [1.0]}
    bad = text_client.post("/v2/models/gpt/infer", json={"inputs": [numbers]})
    assert bad.status_code == 400 and "takes BYTES" in bad.json()["error"]
    unknown = text_client.post("/v2/models/gpt/infer", json={**body, "outputs": [{"name": "x"}]})
    assert unknown.status_code == 400 and "unknown output 'x'" in unknown.json()["error"]


def test_text_classifier_reads_texts_and_token_ids(
    text_client: httpx.Client, text_bundles: dict[str, Path]
) -> None:
    local = Predictor(text_bundles["reviews"])
    texts = ["great fun 3", "boring 7", "dull and far too long"]
    meta = text_client.get("/v2/models/reviews").json()
    assert meta["inputs"] == [{"name": "input", "datatype": "INT64", "shape": [-1, -1]}]
    answer = infer(
        text_client,
        {"inputs": [{"name": "input", "shape": [3], "datatype": "BYTES", "data": texts}]},
        "reviews",
    )
    got = outputs(answer)
    assert list(got["label"]) == [a[0]["class"] for a in local.predict(texts)]
    ids = local.prepare(texts)  # (3, 16) int64 token ids
    for datatype in ("INT64", "INT32"):
        tensor = {"name": "input", "shape": list(ids.shape), "datatype": datatype}
        by_ids = outputs(
            infer(text_client, {"inputs": [{**tensor, "data": ids.tolist()}]}, "reviews")
        )
        np.testing.assert_allclose(
            by_ids["logits"].astype(float), got["logits"].astype(float), atol=1e-5
        )
    short = {"name": "input", "shape": [1, 4], "datatype": "INT64", "data": ids[0, :4].tolist()}
    assert outputs(infer(text_client, {"inputs": [short]}, "reviews"))["label"].shape == (1,)
    too_long = {"name": "input", "shape": [1, 40], "datatype": "INT64", "data": [3] * 40}
    bad = text_client.post("/v2/models/reviews/infer", json={"inputs": [too_long]})
    assert bad.status_code == 400 and "1 to 16 tokens, got 40" in bad.json()["error"]
    outside = {"name": "input", "shape": [1, 2], "datatype": "INT64", "data": [3, 10**6]}
    bad = text_client.post("/v2/models/reviews/infer", json={"inputs": [outside]})
    assert bad.status_code == 400 and "token ids must lie in" in bad.json()["error"]
    pixels = {"name": "input", "shape": [1, 2], "datatype": "FP32", "data": [0.1, 0.2]}
    bad = text_client.post("/v2/models/reviews/infer", json={"inputs": [pixels]})
    assert bad.status_code == 400 and "takes INT64, INT32, BYTES" in bad.json()["error"]
    assert text_client.get("/v2/health/ready").json() == {"ready": True}
