"""The OpenAPI document tells the truth, checked as a client generator reads it: schemathesis's
own command, with every check (status codes and error bodies as declared, request schemas as
strict as the server, ``Allow`` on 405, no 5xx) and 100 examples per operation, against the
served repository. ``schemathesis.toml`` beside the README says where a schema cannot be exact
(a tensor's meaning for the model served)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from deepline.serve.server import BackgroundServer

ROOT = Path(__file__).resolve().parents[2]


def test_schemathesis_finds_nothing_wrong(server: BackgroundServer) -> None:
    document = httpx.get(server.url + "/openapi.json").json()
    assert len(document["paths"]) >= 20
    for item in document["paths"].values():
        for operation in item.values():
            assert "422" not in operation["responses"]  # validation errors are answered 400
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/openapi.json",
        "--checks", "all", "--max-examples", "100", "--workers", "1", "--seed", "1",
        "--no-color",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Selected: " in result.stdout and "failures" not in result.stdout.splitlines()[-1]
