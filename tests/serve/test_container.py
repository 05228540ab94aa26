"""The container image and the KServe manifest, checked without Docker or a cluster: the image's
entrypoint runs here as the container would run it and answers HTTP and gRPC; the Dockerfile
runs as an unprivileged user on a read-only repository; the InferenceService mounts the
repository read-only where the entrypoint reads it and probes routes the server has."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import tritonclient.grpc as triton
import yaml

from tests.serve.test_workers import free_port, ready, wait_for

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
MANIFEST = ROOT / "docker" / "inferenceservice.yaml"


def test_the_image_runs_unprivileged_with_the_entrypoint() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^USER 10001$", text, re.M)  # not root
    assert 'ENTRYPOINT ["deepline-serve"]' in text
    assert "COPY docker/entrypoint.sh /usr/local/bin/deepline-serve" in text
    assert "download.pytorch.org/whl/cpu" in text  # the CPU build first, no CUDA pulled
    assert os.access(ENTRYPOINT, os.X_OK)


def test_the_entrypoint_serves_a_read_only_repository_over_http_and_grpc(
    repository: Path, tmp_path: Path
) -> None:
    repository.chmod(0o555)  # as mounted read-only
    http, grpc_port = free_port(), free_port()
    # `deepline` on the PATH, as the image installs it
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "PATH": path, "DEEPLINE_MODELS": str(repository), "HOST": "127.0.0.1",
           "PORT": str(http), "GRPC_PORT": str(grpc_port), "HOME": str(tmp_path)}  # fmt: skip
    server = subprocess.Popen(
        ["sh", str(ENTRYPOINT)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{http}"

    try:
        wait_for(lambda: ready(url), "the container's server")
        assert httpx.get(f"{url}/v2/models/lenet", timeout=10).status_code == 200
        with triton.InferenceServerClient(f"127.0.0.1:{grpc_port}") as client:
            assert client.is_model_ready("lenet")
    finally:
        server.terminate()
        server.wait(timeout=30)
        repository.chmod(0o755)


def test_the_inference_service_mounts_the_repository_read_only_and_probes_real_routes(
    client: httpx.Client,
) -> None:
    service = yaml.safe_load(MANIFEST.read_text())
    assert service["apiVersion"] == "serving.kserve.io/v1beta1"
    assert service["kind"] == "InferenceService"
    predictor = service["spec"]["predictor"]
    (container,) = predictor["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["models"]["readOnly"] is True
    assert env["DEEPLINE_MODELS"] == mounts["models"]["mountPath"]
    volumes = {v["name"]: v for v in predictor["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"]["readOnly"] is True
    security = container["securityContext"]
    assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"]
    assert mounts["tmp"]["mountPath"] == "/tmp" and "emptyDir" in volumes["tmp"]
    port = int(env["PORT"])
    assert container["ports"][0]["containerPort"] == port
    for probe in ("readinessProbe", "livenessProbe"):
        check = container[probe]["httpGet"]
        assert check["port"] == port and client.get(check["path"]).status_code == 200


KSERVE_PYTHON = Path(os.environ.get("DEEPLINE_KSERVE_PYTHON", "/work/bench_envs/kserve/bin/python"))


@pytest.mark.skipif(
    not KSERVE_PYTHON.is_file(), reason="no venv with the kserve SDK (.ci/run makes one)"
)
def test_the_kserve_sdk_reads_the_manifest_as_written(tmp_path: Path) -> None:
    """The manifest round-trips through kserve's V1beta1InferenceService (and the kubernetes
    models it holds) with no field lost or retyped; a misspelt field fails the same check."""
    check = [str(KSERVE_PYTHON), str(ROOT / "benchmarks" / "kserve_manifest.py"), "--manifest"]
    valid = subprocess.run([*check, str(MANIFEST)], capture_output=True, text=True)
    assert valid.returncode == 0, valid.stdout + valid.stderr
    assert "valid serving.kserve.io/v1beta1 InferenceService" in valid.stdout
    typo = tmp_path / "typo.yaml"
    typo.write_text(MANIFEST.read_text().replace("readOnlyRootFilesystem", "readOnlyRootFilesytem"))
    wrong = subprocess.run([*check, str(typo)], capture_output=True, text=True)
    assert wrong.returncode == 1 and "readOnlyRootFilesytem: unknown field" in wrong.stdout + (
        wrong.stderr
    )
