"""``deepline serve --ray``: the app as a Ray Serve deployment of 2 local replicas answers
deepline's API, TF Serving REST and KServe V2 as the bundle's Predictor does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from deepline.deploy.predictor import Predictor
from deepline.errors import DeeplineError
from deepline.serve.ray_serve import deployment_options, ray_application
from deepline.serve.settings import ServeSettings
from tests.contracts.test_tasks import _v2_inputs
from tests.serve.test_workers import free_port


def test_replicas_are_fixed_or_bounded_for_the_autoscaler() -> None:
    assert deployment_options(3, None, None) == {"num_replicas": 3}
    scaling = deployment_options(1, 1, 4)["autoscaling_config"]
    assert (scaling["min_replicas"], scaling["max_replicas"], scaling["initial_replicas"]) == (
        1, 4, 1)  # fmt: skip
    with pytest.raises(DeeplineError, match="need 1 <= min <= max"):
        deployment_options(1, 3, 2)


@pytest.fixture(scope="module")
def ray_url(digits_bundle: Path) -> Iterator[str]:
    ray = pytest.importorskip("ray")
    from ray import serve

    port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(ray_application(digits_bundle, ServeSettings(), replicas=2), route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def test_two_replicas_answer_every_protocol_like_the_predictor(
    ray_url: str, digits_bundle: Path
) -> None:
    local = Predictor(digits_bundle)
    samples = local.codec.sample_inputs(3, seed=1)
    want = local.predict(samples)
    with httpx.Client(base_url=ray_url, timeout=60) as client:
        assert client.get("/v2/health/ready").status_code == 200
        name = client.get("/models").json()["models"][0]["name"]
        ours = client.post(f"/predict/{name}", json={"inputs": samples}).json()["predictions"]
        assert [a[0]["class"] for a in ours] == [a[0]["class"] for a in want]
        rows = client.post(f"/v1/models/{name}:predict", json={"instances": samples}).json()
        assert [p["label"] for p in rows["predictions"]] == [a[0]["class"] for a in want]
        v2 = client.post(f"/v2/models/{name}/infer", json={"inputs": _v2_inputs(local, samples)})
        assert v2.status_code == 200, v2.text
        v2 = v2.json()
        logits = next(o for o in v2["outputs"] if o["name"] == "logits")
        np.testing.assert_allclose(
            np.array(logits["data"]).reshape(logits["shape"]),
            local.run(local.prepare(samples)),
            atol=1e-5,
        )
