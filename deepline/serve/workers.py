"""Several server processes behind one port (``deepline serve --workers N``).

Uvicorn's supervisor binds the port once and starts N worker processes (spawned, so no worker
inherits another's threads), each loading the models and running its own batcher; it replaces
a worker that dies or stops answering its health checks. Each worker builds the same app from
what this module passes it in the environment. Prometheus metrics are summed over the workers
(prometheus-client's multiprocess mode, files in a private temporary folder); drift scores stay
per worker. With ``--grpc-port`` every worker also listens there (gRPC binds with
``SO_REUSEPORT``, so the kernel spreads connections over them).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from deepline.serve.settings import ServeSettings

SOURCE = "DEEPLINE_SERVE_SOURCE"
SETTINGS = "DEEPLINE_SERVE_SETTINGS"
METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"


def worker_app() -> FastAPI:
    """The app of one worker process: the source and settings its supervisor was given."""
    from deepline.serve.app import create_app
    from deepline.serve.server import freeze_heap

    raw = json.loads(os.environ[SETTINGS])
    settings = ServeSettings(**{**raw, "cors_origins": tuple(raw["cors_origins"])})
    app = create_app(os.environ[SOURCE], settings)
    freeze_heap()
    return app


def serve_workers(source: str | Path, settings: ServeSettings, workers: int) -> None:
    """Serve ``source`` from ``workers`` processes on ``settings.host:settings.port`` until
    interrupted."""
    metrics = tempfile.mkdtemp(prefix="deepline-metrics-")
    os.environ.update({
        SOURCE: str(Path(source).resolve()),
        SETTINGS: json.dumps(dataclasses.asdict(settings)),
        METRICS_DIR: metrics,  # before any worker imports prometheus_client
    })  # fmt: skip
    try:
        uvicorn.run(
            f"{__name__}:worker_app", factory=True, workers=workers, host=settings.host,
            port=settings.port, log_level="warning", access_log=False, server_header=False,
            timeout_keep_alive=30, limit_concurrency=1024, timeout_worker_healthcheck=10,
        )  # fmt: skip
    finally:
        shutil.rmtree(metrics, ignore_errors=True)
