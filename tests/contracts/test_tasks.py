"""The contract of every registered task, from its own example: it trains, evaluates (metrics
and figures), exports with parity, and answers the same through its Predictor and through every
protocol (deepline's API, TF Serving REST and KServe V2) over real HTTP."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from deepline.deploy.export import export_trained
from deepline.deploy.predictor import Predictor
from deepline.evaluate.evaluate import evaluate_trained
from deepline.evaluate.loading import load_trained
from deepline.registry import TASKS
from deepline.serve.app import create_app
from deepline.serve.protocols.kserve import V2_NAMES
from deepline.serve.repository import add_bundle
from deepline.serve.server import BackgroundServer
from deepline.serve.settings import ServeSettings
from tests.contracts.conftest import example_data, example_run

SAMPLES = 3  # examples per request


@pytest.fixture(scope="session")
def task_bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every registered task trained on its example, evaluated and exported."""
    out = {}
    for name in TASKS.names():
        root = tmp_path_factory.mktemp(f"task-{name}")
        config, run_dir = example_run(TASKS.meta(name)["example"], name, "task", root)
        _, data = example_data(config, root / "data")
        run = load_trained(run_dir, data=data)
        evaluation = evaluate_trained(run, "test")
        report = export_trained(run)
        out[name] = {"run": run, "evaluation": evaluation, "export": report,
                     "bundle": Path(report["bundle"])}  # fmt: skip
    return out


@pytest.fixture(scope="session")
def task_server(
    task_bundles: dict[str, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BackgroundServer]:
    repository = tmp_path_factory.mktemp("task-repository")
    for name, made in task_bundles.items():
        add_bundle(made["bundle"], repository, name)
    with BackgroundServer(create_app(repository, ServeSettings(max_batch_size=4))) as running:
        yield running


@pytest.mark.parametrize("name", TASKS.names())
def test_trains_evaluates_and_exports_with_parity(
    name: str, task_bundles: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    made = task_bundles[name]
    run, evaluation = made["run"], made["evaluation"]
    assert run.config.task.name == name and run.task.name == name
    metrics = evaluation["metrics"]
    assert metrics and all(np.isfinite(v) for v in metrics.values()), metrics
    assert json.loads(json.dumps(evaluation)) == evaluation  # eval.json is plain JSON
    for figure_name, figure in run.task.figures(evaluation).items():
        assert figure.draw(tmp_path / f"{figure_name}.png").stat().st_size > 1000
    onnx = made["export"]["formats"]["onnx"]
    assert onnx["ok"] and onnx["max_abs_diff"] <= onnx["atol"]
    signature = run.task.signature()
    assert signature["inputs"] == [run.task.codec.input_spec()]
    metric, mode = run.task.monitor_default()
    assert metric.removeprefix("val/") in metrics and mode in ("min", "max")


def _local(made: dict[str, Any]) -> Predictor:
    return Predictor(made["bundle"], "torch")


@pytest.mark.parametrize("name", TASKS.names())
def test_predictor_backends_agree_and_describe_the_task(
    name: str, task_bundles: dict[str, dict[str, Any]]
) -> None:
    made = task_bundles[name]
    onnx, torch_ = Predictor(made["bundle"]), _local(made)
    description = onnx.describe()
    assert description["task"] == name and description["generates"] == onnx.task.generates
    assert description["inputs"][0]["form"]["type"] and description["answer"]["type"]
    assert [o["name"] for o in description["outputs"]] == [o.name for o in onnx.task.outputs()]
    json.dumps(description)
    samples = onnx.codec.sample_inputs(SAMPLES)
    if onnx.generates:
        assert onnx.generate(samples[0], 4, seed=1) == torch_.generate(samples[0], 4, seed=1)
        return
    named = onnx.named_outputs(onnx.run(onnx.prepare(samples)))
    assert set(named) == {o.name for o in onnx.task.outputs()}
    _assert_same(named, torch_.named_outputs(torch_.run(torch_.prepare(samples))))
    answers = onnx.predict(samples)
    assert len(answers) == SAMPLES and json.loads(json.dumps(answers)) == answers


@pytest.mark.parametrize("name", TASKS.names())
def test_every_protocol_answers_like_the_predictor(
    name: str, task_bundles: dict[str, dict[str, Any]], task_server: BackgroundServer
) -> None:
    local = Predictor(task_bundles[name]["bundle"])  # ONNX Runtime, as the server runs it
    samples = local.codec.sample_inputs(SAMPLES, seed=2)
    with httpx.Client(base_url=task_server.url, timeout=30) as client:
        if local.generates:
            _generation_protocols(client, name, local, samples[0])
            return
        batch = local.prepare(samples)
        want = local.named_outputs(local.run(batch), batch)
        answers = client.post(f"/predict/{name}", json={"inputs": samples})
        assert answers.status_code == 200, answers.text
        _assert_close(answers.json()["predictions"], local.task.answers(want))
        rows = client.post(f"/v1/models/{name}:predict", json={"instances": samples})
        assert rows.status_code == 200, rows.text
        predictions = rows.json()["predictions"]
        _assert_same({k: np.array([p[k] for p in predictions]) for k in want}, want)
        body = {"inputs": _v2_inputs(local, samples)}
        tensors = client.post(f"/v2/models/{name}/infer", json=body)
        assert tensors.status_code == 200, tensors.text
        got = {
            o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in tensors.json()["outputs"]
        }
        _assert_same(got, want)


def _generation_protocols(client: httpx.Client, name: str, local: Predictor, prompt: str) -> None:
    want = local.generate(prompt, 4, seed=0)
    ours = client.post(f"/generate/{name}", json={"prompt": prompt, "max_tokens": 4, "seed": 0})
    assert ours.status_code == 200 and ours.json()["text"] == want, ours.text
    body = {"instances": [{"prompt": prompt, "max_tokens": 4, "seed": 0}]}
    tf = client.post(f"/v1/models/{name}:predict", json=body)
    assert tf.status_code == 200 and tf.json()["predictions"][0]["text"] == want, tf.text
    v2 = {
        "parameters": {"max_tokens": 4, "seed": 0},
        "inputs": [{"name": "prompt", "shape": [1], "datatype": "BYTES", "data": [prompt]}],
    }
    kserve = client.post(f"/v2/models/{name}/infer", json=v2)
    assert kserve.status_code == 200 and kserve.json()["outputs"][0]["data"] == [want], kserve.text


def _v2_inputs(local: Predictor, samples: list[Any]) -> list[dict[str, Any]]:
    """The samples as V2 tensors of a datatype the model's codec reads: one tensor of numbers,
    BYTES texts, or one tensor per named field."""
    if isinstance(samples[0], dict):  # text columns as BYTES, numbers as FP64
        return [
            {"name": key, "shape": [len(samples)],
             "datatype": "BYTES" if isinstance(samples[0][key], str) else "FP64",
             "data": [s[key] for s in samples]}
            for key in samples[0]
        ]  # fmt: skip
    if isinstance(samples[0], str):
        return [{"name": "input", "shape": [len(samples)], "datatype": "BYTES", "data": samples}]
    array = np.asarray(samples)
    kinds = [d for d in local.codec.tensor_dtypes if np.dtype(d).kind == array.dtype.kind]
    kinds = kinds or [d for d in local.codec.tensor_dtypes if np.dtype(d).kind == "u"]
    dtype = kinds[0]
    return [{"name": "input", "shape": list(array.shape), "datatype": V2_NAMES[dtype],
             "data": array.astype(dtype).reshape(-1).tolist()}]  # fmt: skip


def _assert_close(got: Any, want: Any) -> None:
    """JSON answers equal, numbers within 1e-5."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want)
        for key in want:
            _assert_close(got[key], want[key])
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want)
        for g, w in zip(got, want):
            _assert_close(g, w)
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-5, abs=1e-5)
    else:
        assert got == want


def _assert_same(got: dict[str, Any], want: dict[str, np.ndarray]) -> None:
    assert set(got) == set(want)
    for key, value in want.items():
        given = np.asarray(got[key])
        if value.dtype.kind == "O":
            assert [str(v) for v in given.reshape(-1)] == [str(v) for v in value.reshape(-1)], key
        else:
            np.testing.assert_allclose(given.astype(float), value.astype(float), rtol=1e-4,
                                       atol=1e-4, err_msg=key)  # fmt: skip


def test_a_png_reaches_an_image_task_through_every_protocol(
    task_bundles: dict[str, dict[str, Any]], task_server: BackgroundServer
) -> None:
    """Encoded images as the codec reads them: base64 JSON, TF Serving b64, V2 BYTES."""
    from tests.serve.conftest import png_bytes

    local = _local(task_bundles["image_classification"])
    image = np.asarray(local.codec.sample_inputs(1)[0], dtype=np.uint8)[0]  # (H, W) grey
    data = png_bytes(image)
    want = local.predict([data])[0][0]["class"]
    encoded = base64.b64encode(data).decode()
    with httpx.Client(base_url=task_server.url, timeout=30) as client:
        ours = client.post("/predict/image_classification", json={"inputs": [{"b64": encoded}]})
        assert ours.json()["predictions"][0][0]["class"] == want
        tf = client.post(
            "/v1/models/image_classification:predict", json={"instances": [{"b64": encoded}]}
        )
        assert tf.json()["predictions"][0]["label"] == want
