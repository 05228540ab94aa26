"""``deepline serve --workers 2``: two processes answer on one port, their metrics are summed,
and a worker killed mid-traffic is replaced while no request hangs."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest

REQUEST = {"inputs": [[[0.0] * 8] * 8]}  # one 8x8 picture for the digits model


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def workers_of(server: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """The supervisor's worker processes (spawned Python children)."""
    alive = []
    for child in psutil.Process(server.pid).children():
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                alive.append(child)
        except psutil.Error:  # a killed worker not yet reaped
            continue
    return alive


def wait_for(condition, what: str, seconds: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def ready(url: str) -> bool:
    """Whether a server at ``url`` answers V2 readiness with 200."""
    try:
        return httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def two_workers(digits_bundle: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "deepline", "serve", str(digits_bundle), "--port", str(port),
         "--workers", "2", "--max-batch-size", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    try:
        wait_for(lambda: ready(url) and len(workers_of(server)) == 2, "two ready workers")
        name = httpx.get(f"{url}/models").json()["models"][0]["name"]
        yield f"{url}/predict/{name}", server
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_two_workers_answer_and_their_metrics_are_summed(
    two_workers: tuple[str, subprocess.Popen[bytes]],
) -> None:
    predict, _ = two_workers
    with httpx.Client(timeout=30) as client:
        metrics = predict.split("/predict/")[0] + "/metrics"
        before = _answered(client, metrics)
        for _ in range(12):
            assert client.post(predict, json=REQUEST).status_code == 200
        wait_for(lambda: _answered(client, metrics) == before + 12, "12 more in /metrics", 10)


def test_a_killed_worker_is_replaced_and_no_request_hangs(
    two_workers: tuple[str, subprocess.Popen[bytes]],
) -> None:
    predict, server = two_workers
    victim = workers_of(server)[0]

    def ask(_: int) -> str:
        try:
            status = httpx.post(predict, json=REQUEST, timeout=20).status_code
            return str(status)
        except httpx.TransportError as err:  # the dying worker's connection: closed, not hung
            return type(err).__name__

    with ThreadPoolExecutor(8) as pool:
        answers = pool.map(ask, range(200))
        time.sleep(0.05)
        victim.kill()
        outcomes = list(answers)  # every one returned: none hung past its timeout
    assert outcomes.count("200") >= 150, outcomes
    assert all(o == "200" or o.endswith("Error") for o in outcomes), set(outcomes)
    wait_for(lambda: len(workers_of(server)) == 2 and victim.pid not in
             [w.pid for w in workers_of(server)], "a replacement worker")  # fmt: skip
    assert httpx.post(predict, json=REQUEST, timeout=20).status_code == 200


def _answered(client: httpx.Client, metrics: str) -> float:
    text = client.get(metrics).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("deepline_requests_total{") and 'protocol="deepline"' in line
    )
