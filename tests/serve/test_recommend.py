"""A recommender served over real HTTP: every protocol answers as offline ``recommend`` does,
unknown users fall back to popularity (flagged), and bad inputs get 4xx in each protocol's own
format while the server stays up. Also ``deepline recommend`` on the terminal."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from deepline.cli import main
from deepline.deploy.predictor import Predictor
from deepline.errors import InputError
from deepline.serve.app import create_app
from deepline.serve.repository import add_bundle
from deepline.serve.server import BackgroundServer
from deepline.serve.settings import ServeSettings

NAME = "movies"


@pytest.fixture(scope="module")
def server(recommender_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    repository = tmp_path_factory.mktemp("recommender-repo")
    add_bundle(recommender_bundle, repository, NAME)
    with BackgroundServer(create_app(repository, ServeSettings(max_batch_size=8))) as running:
        yield running.url


@pytest.fixture(scope="module")
def local(recommender_bundle: Path) -> Predictor:
    return Predictor(recommender_bundle)  # ONNX Runtime, as the server runs it


def ids(answer: dict[str, Any]) -> list[str]:
    return [a["item"] for a in answer["items"]]


def test_known_users_and_histories(local: Predictor) -> None:
    user = local.codec.users[0]
    answer = local.recommend(user=user, k=5)
    history = [h["item"] for h in answer["history"]]
    assert len(answer["items"]) == 5 and answer["fallback"] is None
    assert not set(ids(answer)) & set(history)  # seen items are left out
    scores = [a["score"] for a in answer["items"]]
    assert scores == sorted(scores, reverse=True)
    assert ids(local.recommend(history=history, k=5)) == ids(answer)  # the same history
    seen = local.recommend(user=user, k=30, include_seen=True)
    assert set(history) <= set(ids(seen))  # every item, the seen ones included
    titles = {a["item"]: a["title"] for a in seen["items"]}
    assert titles["7"] == "Amélie (1995)" and titles["3"] == "Film 3 (1995)"
    torch_answer = Predictor(local.bundle, "torch").recommend(user=user, k=5)
    assert ids(torch_answer) == ids(answer)


def test_unknown_users_empty_histories_and_bad_inputs(local: Predictor) -> None:
    for answer in (local.recommend(user="nobody", k=3), local.recommend(history=[], k=3)):
        assert answer["fallback"] == "popularity" and answer["history"] == []
        counts = local.task.meta.interactions["counts"]
        best = np.argsort(-np.asarray(counts), kind="stable")[:3]
        assert ids(answer) == [local.codec.items[i - 1] for i in best]
    with pytest.raises(InputError, match=r"unknown item id.*999"):
        local.recommend(history=["1", "999"])
    with pytest.raises(InputError, match="k must be at least 1"):
        local.recommend(user=local.codec.users[0], k=0)
    with pytest.raises(InputError, match="give a user"):
        local.recommend()


def test_every_protocol_answers_like_recommend(local: Predictor, server: str) -> None:
    user = local.codec.users[1]
    want_user = local.recommend(user=user, k=10)
    want_history = local.recommend(history=["3", "4", "5"], k=10)
    with httpx.Client(base_url=server, timeout=30) as client:
        inputs = [{"user": user}, {"history": [3, 4, 5]}, {"user": "nobody"}]
        ours = client.post(f"/predict/{NAME}", json={"inputs": inputs, "top_k": 10})
        assert ours.status_code == 200, ours.text
        first, second, third = ours.json()["predictions"]
        assert ids(first) == ids(want_user) and ids(second) == ids(want_history)
        assert first["items"][0]["score"] == pytest.approx(want_user["items"][0]["score"], 1e-5)
        assert third["fallback"] == "popularity" and first["fallback"] is None
        tf = client.post(f"/v1/models/{NAME}:predict", json={"instances": [[3, 4, 5]]})
        assert tf.status_code == 200, tf.text
        assert tf.json()["predictions"][0]["items"][:10] == ids(want_history)
        v2 = {"inputs": [{"name": "input", "shape": [2, 3], "datatype": "INT64",
                          "data": [3, 4, 5, -1, 3, 4]}]}  # fmt: skip
        kserve = client.post(f"/v2/models/{NAME}/infer", json=v2)
        assert kserve.status_code == 200, kserve.text
        outputs = {o["name"]: o for o in kserve.json()["outputs"]}
        assert outputs["items"]["shape"][0] == 2 and outputs["items"]["datatype"] == "BYTES"
        k = outputs["items"]["shape"][1]
        assert outputs["items"]["data"][:10] == ids(want_history)
        second_row = outputs["items"]["data"][k : k + 10]
        assert second_row == ids(local.recommend(history=["3", "4"], k=10))  # -1 pads


def test_bad_requests_get_each_protocols_error(server: str) -> None:
    with httpx.Client(base_url=server, timeout=30) as client:
        unknown = client.post(f"/predict/{NAME}", json={"inputs": [{"history": [999]}]})
        assert unknown.status_code == 400 and "999" in unknown.json()["error"]
        zero = client.post(f"/predict/{NAME}", json={"inputs": [{"user": "1"}], "top_k": 0})
        assert 400 <= zero.status_code < 500 and "top_k" in zero.text
        many = client.post(f"/predict/{NAME}", json={"inputs": [{"user": "1"}], "top_k": 500})
        assert many.status_code == 400 and "max_k" in many.json()["error"]
        odd = client.post(f"/predict/{NAME}", json={"inputs": [{"who": "1"}]})
        assert odd.status_code == 400 and "user" in odd.json()["error"]
        tf = client.post(f"/v1/models/{NAME}:predict", json={"instances": [[999]]})
        assert tf.status_code == 400 and "999" in tf.json()["error"]
        v2 = {"inputs": [{"name": "input", "shape": [1, 1], "datatype": "FP32", "data": [3.5]}]}
        kserve = client.post(f"/v2/models/{NAME}/infer", json=v2)
        assert kserve.status_code == 400 and "error" in kserve.json()
        assert client.get(f"/v2/models/{NAME}/ready").status_code == 200  # still up


def deepline(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """The real entry point in-process: (exit code, stdout + stderr)."""
    code = 0
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.argv", ["deepline", *args])
        try:
            main()
        except SystemExit as stop:
            code = int(stop.code or 0)
    out, err = capsys.readouterr()
    return code, out + err


def test_recommend_on_the_terminal(
    recommender_bundle: Path, local: Predictor, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle, user = str(recommender_bundle), local.codec.users[0]
    code, out = deepline(["recommend", bundle, "--user", user, "--k", "3"], capsys)
    assert code == 0, out
    for entry in local.recommend(user=user, k=3)["items"]:
        assert entry["title"] in out
    code, out = deepline(["recommend", bundle, "--user", "nobody"], capsys)
    assert code == 0 and "not in the training log" in out
    code, out = deepline(["recommend", bundle, "--history", "3,999"], capsys)
    assert code != 0 and "999" in out
    code, out = deepline(["recommend", bundle, "--k", "0", "--user", user], capsys)
    assert code != 0 and "--k" in out


def test_exported_graph_takes_any_history_length(local: Predictor) -> None:
    """ONNX Runtime and eager PyTorch agree on short histories and on ones longer than the
    model reads (whose every item is still excluded)."""
    eager = Predictor(local.bundle, "torch")
    items = local.codec.items
    for history in (items[:1], items[:5], items[:20] + items[:3]):
        batch = local.prepare([{"history": history}])
        assert np.allclose(local.run(batch), eager.run(batch), atol=1e-4)
        answer = local.recommend(history=history, k=len(items) - len(set(history)))
        assert not set(ids(answer)) & set(history)


def test_concurrent_requests_of_many_lengths_are_answered_alike(
    local: Predictor, server: str
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    histories = [local.codec.items[i : i + 2 + i % 11] for i in range(16)]
    want = [ids(local.recommend(history=h, k=5)) for h in histories]

    def ask(history: list[str]) -> list[str]:
        body = {"inputs": [{"history": history}], "top_k": 5}
        response = httpx.post(f"{server}/predict/{NAME}", json=body, timeout=30)
        assert response.status_code == 200, response.text
        return ids(response.json()["predictions"][0])

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(ask, histories)) == want
