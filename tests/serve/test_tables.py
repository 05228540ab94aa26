"""A table model served with group thresholds: every protocol takes named columns, decides as
``deepline fairness --mitigate`` did offline, and answers a bad row with a clear 400."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from deepline.deploy.bundle import load_bundle
from deepline.deploy.export import export_run
from deepline.deploy.predictor import Predictor
from deepline.evaluate.loading import load_trained
from deepline.serve.app import create_app
from deepline.serve.server import BackgroundServer
from deepline.tasks.thresholds import apply_thresholds, input_seeds
from deepline.trust.fairness import fairness_of_run, positive_scores, write_fairness


@pytest.fixture(scope="module")
def people_bundle(people_run: Path) -> Path:
    """The people model with demographic-parity thresholds on ``group``, exported."""
    run = load_trained(people_run)
    write_fairness(people_run, fairness_of_run(run, None, "test", 0, "demographic_parity"))
    return Path(export_run(people_run)["bundle"])


@pytest.fixture(scope="module")
def rows(people_run: Path) -> list[dict[str, Any]]:
    """The first 40 rows of the training CSV as clients send them (numbers as numbers)."""
    config = load_trained(people_run).config
    with open(str(config.data.path), newline="") as fh:
        found = list(csv.DictReader(fh))[:40]
    return [{"score": float(r["score"]), "hours": int(r["hours"]), "group": r["group"]}
            for r in found]  # fmt: skip


@pytest.fixture(scope="module")
def client(people_bundle: Path) -> Iterator[httpx.Client]:
    with (
        BackgroundServer(create_app(people_bundle)) as server,
        httpx.Client(base_url=server.url, timeout=30) as c,
    ):
        yield c


def test_the_bundle_decides_as_the_offline_mitigation(
    people_run: Path, people_bundle: Path
) -> None:
    spec = load_bundle(people_bundle).spec
    assert spec["thresholds"]["applied"] and spec["task"]["thresholds"]["column"] == "group"
    run = load_trained(people_run)
    _, scores = positive_scores(run, "test")
    test = run.data.test
    offline = apply_thresholds(spec["task"]["thresholds"]["rule"], scores, test.groups["group"],
                               input_seeds(test.x.numpy()))  # fmt: skip
    predictor = Predictor(people_bundle, backend="torch")
    x = test.x.numpy()
    labels = predictor.named_outputs(predictor.run(x), x)["label"]
    assert [run.data.meta.classes.index(label) for label in labels] == offline.tolist()
    plain = (scores > 0.5).astype(int)
    rate = {g: offline[np.array(test.groups["group"]) == g].mean() for g in ("a", "b")}
    before = {g: plain[np.array(test.groups["group"]) == g].mean() for g in ("a", "b")}
    assert abs(rate["a"] - rate["b"]) < abs(before["a"] - before["b"])


def _kserve(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"inputs": [
        {"name": "score", "datatype": "FP32", "shape": [len(rows)],
         "data": [r["score"] for r in rows]},
        {"name": "hours", "datatype": "INT64", "shape": [len(rows)],
         "data": [r["hours"] for r in rows]},
        {"name": "group", "datatype": "BYTES", "shape": [len(rows)],
         "data": [r["group"] for r in rows]},
    ]}  # fmt: skip


def _labels(protocol: str, response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    body = response.json()
    if protocol == "deepline":
        return [answer[0]["class"] for answer in body["predictions"]]
    if protocol == "tfserving":
        return [p["label"] for p in body["predictions"]]
    return next(o["data"] for o in body["outputs"] if o["name"] == "label")


def _post(client: httpx.Client, protocol: str, rows: list[dict[str, Any]]) -> httpx.Response:
    if protocol == "deepline":
        return client.post("/predict/people", json={"inputs": rows})
    if protocol == "tfserving":
        return client.post("/v1/models/people:predict", json={"instances": rows})
    return client.post("/v2/models/people/infer", json=_kserve(rows))


PROTOCOLS = ("deepline", "tfserving", "kserve")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_protocol_takes_named_columns_and_answers_as_the_predictor(
    client: httpx.Client, people_bundle: Path, rows: list[dict[str, Any]], protocol: str
) -> None:
    expected = [a[0]["class"] for a in Predictor(people_bundle).predict(rows)]
    assert _labels(protocol, _post(client, protocol, rows)) == expected
    one = _labels(protocol, _post(client, protocol, rows[3:4]))
    assert one == expected[3:4]  # an input alone gets the decision it gets in a batch


BAD_ROWS = [
    ({"score": 0.5, "hours": 20, "group": "c"}, "column 'group' has no category 'c'"),
    ({"score": 0.5, "group": "a"}, "hours"),
    ({"score": 0.5, "hours": "many", "group": "a"}, "column 'hours' is numeric"),
]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("row,message", BAD_ROWS)
def test_a_bad_row_gets_a_clear_400_in_the_protocols_own_format(
    client: httpx.Client, protocol: str, row: dict[str, Any], message: str
) -> None:
    if protocol == "kserve":
        body = _kserve([{"hours": 0, **row}])
        body["inputs"] = [t for t in body["inputs"] if t["name"] in row]
        if row.get("hours") == "many":
            body["inputs"][1] = {"name": "hours", "datatype": "BYTES", "shape": [1],
                                 "data": ["many"]}  # fmt: skip
        response = client.post("/v2/models/people/infer", json=body)
    else:
        response = _post(client, protocol, [row])
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]
    assert _post(client, protocol, [{"score": 0.5, "hours": 20, "group": "a"}]).status_code == 200


def test_drift_is_watched_column_by_column(people_bundle: Path, rows: list[dict[str, Any]]) -> None:
    from deepline.serve.settings import ServeSettings

    shifted = [{**r, "score": r["score"] + 4.0} for r in rows * 3]  # only score moves
    app = create_app(people_bundle, ServeSettings(drift_window=120))
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        assert c.post("/predict/people", json={"inputs": shifted}).status_code == 200
        report = c.get("/monitor/people").json()
    assert report["enough"] and report["status"] == "drift"
    assert report["psi"]["input_score"] > 0.25  # a real shift
    assert report["psi"]["input_hours"] < report["psi"]["input_score"] / 4


def test_the_card_of_the_bundle_says_it_decides_by_thresholds(people_bundle: Path) -> None:
    from deepline.trust.audit import audit

    card = audit(people_bundle, ["fairness"])
    assert card.content["bundle_thresholds"]["applied"]
    page = card.html_path.read_text()
    assert (
        "the bundle decides by group thresholds" in page and "yes, for demographic_parity" in page
    )
    assert "after thresholds (demographic_parity)" in page  # the mitigation table and plot


def test_thresholds_follow_the_temperature_the_bundle_applies(
    people_run: Path, tmp_path: Path
) -> None:
    """Fitted before calibration they would see other probabilities than the bundle: export
    refuses them until they are fitted again; then served decisions equal offline ones."""
    import shutil

    from deepline.trust.calibration import calibrate_run, write_calibration

    run_dir = Path(shutil.copytree(people_run, tmp_path / "run"))
    write_fairness(run_dir, fairness_of_run(load_trained(run_dir), None, "test", 0,
                                            "demographic_parity"))  # fmt: skip
    write_calibration(run_dir, {**calibrate_run(load_trained(run_dir)), "temperature": 2.5})
    stale = load_bundle(export_run(run_dir, out=tmp_path / "stale")["bundle"]).spec
    assert not stale["thresholds"]["applied"] and "temperature" in stale["thresholds"]["why"]
    run = load_trained(run_dir)
    write_fairness(run_dir, fairness_of_run(run, None, "test", 0, "demographic_parity"))
    bundle = Path(export_run(run_dir, out=tmp_path / "fresh")["bundle"])
    spec = load_bundle(bundle).spec
    assert spec["thresholds"]["applied"] and spec["task"]["temperature"] == 2.5
    _, scores = positive_scores(run, "test")
    x = run.data.test.x.numpy()
    offline = apply_thresholds(spec["task"]["thresholds"]["rule"], scores,
                               run.data.test.groups["group"], input_seeds(x))  # fmt: skip
    predictor = Predictor(bundle, backend="torch")
    labels = predictor.named_outputs(predictor.run(x), x)["label"]
    assert [run.data.meta.classes.index(label) for label in labels] == offline.tolist()
    rules = [op["threshold"] for ops in spec["task"]["thresholds"]["rule"].values() for op in ops]
    assert all(-1.0 <= t <= 2.0 for t in rules)  # Fairlearn's infinities kept as strict JSON


def test_a_card_and_a_bundle_that_decide_differently_disagree(people_bundle: Path) -> None:
    from deepline.deploy.bundle import load_bundle as load

    bundle = load(people_bundle)
    card = {"bound_to": {"weights_sha256": bundle.weights_sha256(),
                         "data_fingerprint": bundle.spec.get("data_fingerprint")},
            "bundle_thresholds": {"applied": False, "why": "not fitted"}}  # fmt: skip
    problems = bundle.card_problems(card)
    assert len(problems) == 1 and "group thresholds differ" in problems[0]


def test_a_number_beyond_float32_is_a_clear_400(client: httpx.Client) -> None:
    response = _post(client, "deepline", [{"score": 1e39, "hours": 20, "group": "a"}])
    assert response.status_code == 400 and "out of range" in response.json()["error"]
