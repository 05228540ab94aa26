"""deepline's own API, the repository, safety (token, body cap, timeout), metrics and drift,
over real HTTP on 127.0.0.1 against a served digits bundle."""

from __future__ import annotations

import asyncio
import base64
import io
import re
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from deepline.deploy.predictor import Predictor
from deepline.errors import DeeplineError
from deepline.serve.app import create_app
from deepline.serve.repository import add_bundle, scan
from deepline.serve.server import BackgroundServer
from deepline.serve.settings import ServeSettings
from tests.serve.conftest import digits_test_split, png_bytes


def top_classes(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [answers[0]["class"] for answers in response.json()["predictions"]]


@pytest.fixture(scope="module")
def expected(lenet_bundle: Path, sample_digits: tuple[np.ndarray, np.ndarray]) -> list[str]:
    """What the bundle answers locally for the 32 digits."""
    answers = Predictor(lenet_bundle).predict(list(sample_digits[0]))
    return [a[0]["class"] for a in answers]


# -- deepline's own API --------------------------------------------------------------------------


def test_lists_every_model_and_version(client: httpx.Client) -> None:
    models = {m["name"]: m for m in client.get("/models").json()["models"]}
    assert models["lenet"]["versions"] == [1, 2] and models["lenet"]["latest"] == 2
    assert models["digits"]["versions"] == [1]
    assert models["lenet"]["classes"] == [str(i) for i in range(10)]
    meta = client.get("/models/lenet", params={"version": 1}).json()
    assert meta["version"] == 1 and meta["signature"]["inputs"][0]["shape"] == [-1, 1, 28, 28]


def test_predicts_pixels_as_the_local_predictor_does(
    client: httpx.Client, sample_digits: tuple[np.ndarray, np.ndarray], expected: list[str]
) -> None:
    images, labels = sample_digits
    as_ints = client.post("/predict/lenet", json={"inputs": images[:16].tolist()})
    as_floats = client.post("/predict/lenet", json={"inputs": (images[:16] / 255).tolist()})
    assert top_classes(as_ints) == top_classes(as_floats) == expected[:16]
    assert np.mean([int(c) for c in expected] == labels) >= 0.8  # a trained model
    body = as_ints.json()
    assert body["model"] == "lenet" and body["version"] == 2 and body["latency_ms"] > 0
    probs = [a["probability"] for a in body["predictions"][0]]
    assert len(probs) == 3 and probs == sorted(probs, reverse=True)


def test_images_as_base64_and_multipart_uploads(
    client: httpx.Client, sample_digits: tuple[np.ndarray, np.ndarray], expected: list[str]
) -> None:
    images = sample_digits[0][:3]
    encoded = [{"b64": base64.b64encode(png_bytes(img)).decode()} for img in images]
    response = client.post("/predict/lenet?version=1", json={"inputs": encoded, "top_k": 1})
    assert top_classes(response) == expected[:3]
    assert len(response.json()["predictions"][0]) == 1
    big = Image.fromarray(images[0]).resize((200, 200))  # any size: resized to 28x28
    buf = io.BytesIO()
    big.convert("RGB").save(buf, format="JPEG", quality=95)
    files = [
        ("file", ("a.png", png_bytes(images[1]), "image/png")),
        ("file", ("b.jpg", buf.getvalue())),
    ]
    response = client.post("/predict/lenet", files=files, data={"top_k": "2"})
    assert top_classes(response) == [expected[1], expected[0]]


def test_concurrent_requests_with_distinct_inputs_get_their_own_answers(
    server: BackgroundServer, sample_digits: tuple[np.ndarray, np.ndarray], expected: list[str]
) -> None:
    images = sample_digits[0]

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
            return await asyncio.gather(
                *(
                    c.post("/predict/lenet", json={"inputs": [images[i % 32].tolist()]})
                    for i in range(96)
                )
            )

    batch_count = _metric(server, "deepline_batch_size_count", model="lenet", version="2")
    responses = asyncio.run(burst())
    assert [top_classes(r)[0] for r in responses] == [expected[i % 32] for i in range(96)]
    calls = _metric(server, "deepline_batch_size_count", model="lenet", version="2") - batch_count
    assert calls < 96  # some requests shared a model call


def test_errors_are_json_with_a_reason_and_the_server_stays_up(client: httpx.Client) -> None:
    cases = [
        ("/predict/nope", {"inputs": [[0.0]]}, 404, "no model named 'nope'"),
        ("/predict/lenet?version=7", {"inputs": [[0.0]]}, 404, "has no version 7"),
        ("/predict/lenet", {"inputs": [[1, 2, 3]]}, 400, "image must be 2-D"),
        ("/predict/lenet", {"inputs": []}, 400, "inputs"),
        ("/predict/lenet", {"inputs": [[[0.5, "x"]]]}, 400, "numbers"),
        ("/predict/lenet", {"inputs": [[[1.0, 2.0], [3.0]]]}, 400, "rectangular"),
        ("/predict/lenet", {"inputs": [{"b64": "not base64!"}]}, 400, "base64"),
        ("/predict/lenet", {"inputs": [{"b64": base64.b64encode(b"text").decode()}]}, 400, "image"),
        ("/predict/lenet", {"inputs": [[[0.5]]], "extra": 1}, 400, "extra"),
        ("/predict/lenet", {"inputs": [[[float("nan")]]]}, 400, ""),
        ("/predict/lenet", {"inputs": [[[0.5, 200.0]]]}, 400, "must lie in [0, 1]"),
        ("/predict/lenet", {"inputs": [[[0, 256]]]}, 400, "must lie in 0..255"),
        ("/predict/lenet", {"inputs": [[["a", "b"]]]}, 400, "got text"),
        ("/generate/lenet", {"prompt": "hi"}, 400, "does not generate"),
    ]
    for path, body, status, reason in cases:
        response = client.post(
            path, content=_json(body), headers={"content-type": "application/json"}
        )
        assert response.status_code == status, (path, body, response.text)
        assert reason in response.json()["error"]
    response = client.post("/predict/lenet", content=b"{not json")
    assert response.status_code == 400 and "invalid request" in response.json()["error"]
    assert client.get("/models").status_code == 200


def test_data_urls_huge_images_and_the_local_api_docs(
    client: httpx.Client, sample_digits: tuple[np.ndarray, np.ndarray], expected: list[str]
) -> None:
    url = "data:image/png;base64," + base64.b64encode(png_bytes(sample_digits[0][0])).decode()
    assert top_classes(client.post("/predict/lenet", json={"inputs": [{"b64": url}]})) == [
        expected[0]
    ]
    huge = png_bytes(np.zeros((6000, 6000), dtype=np.uint8))  # 36 MP in a few tens of KiB
    response = client.post("/predict/lenet", files=[("file", ("huge.png", huge))])
    assert response.status_code == 400 and "6000x6000 pixels" in response.json()["error"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in docs.text
    assert "cdn." not in docs.text  # works offline
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200


def _json(body: object) -> bytes:
    import json

    return json.dumps(body, allow_nan=True).encode()


# -- safety ---------------------------------------------------------------------------------------


def test_body_cap_counts_every_byte(client: httpx.Client, server: BackgroundServer) -> None:
    cap = server.settings.max_body_bytes
    at_cap = client.post("/predict/lenet", content=b" " * cap)
    assert at_cap.status_code == 400  # read and refused as JSON, not as too large
    over = client.post("/predict/lenet", content=b" " * (cap + 1))
    assert over.status_code == 413 and "limit" in over.json()["error"]

    def chunks():  # no Content-Length: counted as it streams
        for _ in range(cap // 65536 + 2):
            yield b" " * 65536

    streamed = client.post("/predict/lenet", content=chunks())
    assert streamed.status_code == 413
    assert client.get("/models").status_code == 200


@pytest.fixture(scope="module")
def guarded(repository: Path) -> BackgroundServer:
    settings = ServeSettings(token="s3cret", timeout_s=1e-6)
    with BackgroundServer(create_app(repository, settings)) as running:
        yield running


def test_bearer_token_guards_every_route_but_liveness(guarded: BackgroundServer) -> None:
    with httpx.Client(base_url=guarded.url) as c:
        for path in ("/models", "/metrics", "/openapi.json", "/monitor/lenet", "/"):
            response = c.get(path)
            assert response.status_code == 401, path
            assert response.json() == {"error": "missing or wrong bearer token"}
        assert c.get("/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/models", headers={"Authorization": "bearer s3cret"}).status_code == 200
        assert c.get("/v2/health/live").status_code in (200, 404)  # open (404 if not served)
        assert c.get("/v2/health/live").status_code != 401


def test_slow_inference_times_out_with_504(
    guarded: BackgroundServer, sample_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    with httpx.Client(base_url=guarded.url, headers={"Authorization": "Bearer s3cret"}) as c:
        response = c.post("/predict/lenet", json={"inputs": [sample_digits[0][0].tolist()]})
        assert response.status_code == 504 and "longer than" in response.json()["error"]
        assert c.get("/models").status_code == 200


def test_cors_is_off_by_default(client: httpx.Client) -> None:
    response = client.options(
        "/models",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in response.headers


# -- metrics and drift ----------------------------------------------------------------------------


def _metric(server: BackgroundServer, name: str, **labels: str) -> float:
    text = httpx.get(server.url + "/metrics").text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            if all(found.get(k) == v for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
    return total


def test_prometheus_metrics_count_requests_by_model_protocol_and_status(
    client: httpx.Client, server: BackgroundServer, sample_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    before = _metric(server, "deepline_requests_total", model="lenet", protocol="deepline")
    client.post("/predict/lenet?version=1", json={"inputs": [sample_digits[0][0].tolist()]})
    client.post("/predict/lenet?version=1", json={"inputs": [[1.0]]})
    assert (
        _metric(
            server,
            "deepline_requests_total",
            model="lenet",
            version="1",
            protocol="deepline",
            status="400",
        )
        >= 1
    )
    after = _metric(server, "deepline_requests_total", model="lenet", protocol="deepline")
    assert after - before == 2
    text = client.get("/metrics").text
    for family in (
        "deepline_request_seconds_bucket",
        "deepline_queue_seconds_bucket",
        "deepline_batch_size_bucket",
        "deepline_drift_psi",
    ):
        assert family in text
    assert client.get("/metrics").headers["content-type"].startswith("text/plain")


def test_drift_is_low_for_real_digits_and_high_for_something_else(lenet_bundle: Path) -> None:
    digits = digits_test_split()[0][:340]  # digits the model never trained on
    app = create_app(lenet_bundle, ServeSettings(drift_window=340))
    name = next(iter(app.state.plane.models)).name
    with BackgroundServer(app) as running, httpx.Client(base_url=running.url) as c:
        assert c.get(f"/monitor/{name}").json()["status"] == "collecting (0/100)"
        for i in range(0, 340, 20):  # 20 digits a request
            c.post(f"/predict/{name}", json={"inputs": digits[i : i + 20].tolist()})
        calm = c.get(f"/monitor/{name}").json()
        rng = np.random.default_rng(0)
        for _ in range(9):  # bright noise, nothing like a digit
            noise = (rng.random((20, 28, 28)) * 255).astype(np.uint8)
            c.post(f"/predict/{name}", json={"inputs": noise.tolist()})
        shifted = c.get(f"/monitor/{name}").json()
        gauge = _metric(running, "deepline_drift_psi", model=name, signal="input_mean")
    assert calm["window"] == 340 and calm["status"] != "drift", calm  # test vs train: ~0.1
    assert shifted["status"] == "drift" and shifted["score"] > 0.25 > calm["psi"]["input_mean"]
    assert gauge == pytest.approx(shifted["psi"]["input_mean"])


# -- repository and command line ------------------------------------------------------------------


def test_repository_layout_versions_and_names(lenet_bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "models"
    assert add_bundle(lenet_bundle, root, "a").version == 1
    assert add_bundle(lenet_bundle, root, "a").version == 2
    assert [(e.name, e.version) for e in scan(root)] == [("a", 1), ("a", 2)]
    assert [e.version for e in scan(lenet_bundle)] == [1]  # a bundle is a repository of one
    assert scan(lenet_bundle.parent)[0].path == lenet_bundle  # a run folder: its bundle
    with pytest.raises(DeeplineError, match="not allowed"):
        add_bundle(lenet_bundle, root, "../escape")
    with pytest.raises(DeeplineError, match="not a deepline bundle"):
        add_bundle(tmp_path, root, "b")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DeeplineError, match="no models in"):
        scan(tmp_path / "empty")


def test_cli_repo_add_serve_and_monitor(
    lenet_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], server: BackgroundServer
) -> None:
    import socket
    import subprocess
    import sys
    import time

    from tests.cli.test_cli import deepline

    code, out, _ = deepline(
        ["repo", "add", str(lenet_bundle), "--name", "lenet", "--repo", str(tmp_path / "repo")],
        capsys,
    )
    assert code == 0 and "version 1" in out
    assert "lenet" in deepline(["repo", "list", "--repo", str(tmp_path / "repo")], capsys)[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "deepline", "serve", str(tmp_path / "repo"), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                models = httpx.get(f"http://127.0.0.1:{port}/models").json()["models"]
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
                time.sleep(0.2)
        assert [m["name"] for m in models] == ["lenet"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    code, _, err = deepline(
        ["serve", str(lenet_bundle), "--port", server.url.rsplit(":", 1)[1]], capsys
    )
    assert code == 2 and "cannot listen on" in err and "pick another --port" in err
    code, table, _ = deepline(["monitor", server.url, "--once"], capsys)
    assert code == 0 and "lenet" in table and "digits" in table and "PSI" in table


def test_each_model_may_have_its_own_batching(lenet_bundle: Path, tmp_path: Path) -> None:
    from deepline.serve.repository import Batching

    root = tmp_path / "models"
    add_bundle(lenet_bundle, root, "solo", Batching(max_batch_size=1))
    add_bundle(lenet_bundle, root, "patient", Batching(max_delay_ms=20))
    add_bundle(lenet_bundle, root, "plain")
    assert (root / "solo" / "batching.yaml").read_text() == "max_batch_size: 1\n"
    settings = ServeSettings(max_batch_size=32, max_delay_ms=1)
    models = create_app(root, settings).state.plane.models
    solo, patient, plain = (models.get(n).batcher for n in ("solo", "patient", "plain"))
    assert (solo.max_batch_size, patient.max_batch_size, plain.max_batch_size) == (1, 32, 32)
    assert (patient.max_delay_s, plain.max_delay_s) == (0.02, 0.001)
    (root / "plain" / "batching.yaml").write_text("max_batch_size: 0\nspeed: 3\n")
    with pytest.raises(DeeplineError, match=r"batching\.yaml") as err:
        scan(root)
    assert "max_batch_size" in str(err.value) and "speed" in str(err.value)
