"""Replicas on Ray Serve (``deepline serve --ray``): the same app, every protocol, as one Ray
Serve deployment whose replicas Ray places on the machines of its cluster and scales.

Each replica builds the app itself from the model source and settings (nothing loaded is
pickled), with its own batcher; Ray Serve's HTTP proxy spreads requests over the replicas.
``replicas`` fixes their number; ``min_replicas``/``max_replicas`` let Ray's autoscaler move
between bounds by the requests waiting per replica. gRPC stays with ``deepline serve`` itself
(Ray Serve runs its own gRPC proxy with its own service definitions).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from deepline.errors import DeeplineError
from deepline.serve.settings import ServeSettings

TARGET_ONGOING_REQUESTS = 32  # per replica, what the autoscaler aims at


def deployment_options(
    replicas: int, min_replicas: int | None, max_replicas: int | None
) -> dict[str, Any]:
    """Ray Serve's options: a fixed number of replicas, or autoscaling bounds."""
    if min_replicas is None and max_replicas is None:
        return {"num_replicas": replicas}
    low = min_replicas if min_replicas is not None else 1
    high = max_replicas if max_replicas is not None else max(low, replicas)
    if not 1 <= low <= high:
        raise DeeplineError(f"--min-replicas {low} and --max-replicas {high}: need 1 <= min <= max")
    return {"autoscaling_config": {"min_replicas": low, "max_replicas": high,
                                   "initial_replicas": min(max(replicas, low), high),
                                   "target_ongoing_requests": TARGET_ONGOING_REQUESTS}}  # fmt: skip


def ray_application(
    source: str | Path,
    settings: ServeSettings,
    replicas: int = 1,
    min_replicas: int | None = None,
    max_replicas: int | None = None,
) -> Any:
    """The bound Ray Serve application serving ``source`` (give it to ``serve.run``)."""
    from ray import serve

    folder = str(Path(source).resolve())
    # gRPC belongs to deepline's own server; each replica answers HTTP only
    replica_settings = dataclasses.replace(settings, grpc_port=None)

    def build() -> Any:  # runs on each replica
        from deepline.serve.app import create_app

        return create_app(folder, replica_settings)

    ingress = serve.ingress(build)(type("DeeplineServer", (), {"__doc__": __doc__}))
    options = deployment_options(replicas, min_replicas, max_replicas)
    deployment: Any = serve.deployment(ingress, name="deepline", **options)
    return deployment.bind()


def serve_on_ray(
    source: str | Path,
    settings: ServeSettings,
    replicas: int = 1,
    min_replicas: int | None = None,
    max_replicas: int | None = None,
    address: str | None = None,
) -> None:
    """Start (or join, with ``address``) a Ray cluster and serve until interrupted."""
    import time

    import ray
    from ray import serve

    ray.init(address=address, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": settings.host, "port": settings.port})
    serve.run(ray_application(source, settings, replicas, min_replicas, max_replicas),
              route_prefix="/")  # fmt: skip
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.shutdown()
        ray.shutdown()
