"""Server settings: one frozen record, filled from ``deepline serve`` options."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

DEFAULT_MAX_BODY = 16 * 1024 * 1024


@dataclass(frozen=True)
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    grpc_port: int | None = None  # KServe V2 over gRPC on this port too (0: a free one)
    token: str | None = None  # bearer token required on every route but liveness
    max_body_bytes: int = DEFAULT_MAX_BODY  # all inputs of one request together
    timeout_s: float = 30.0  # per request, queueing included
    backend: str = "onnx"
    max_batch_size: int = 64  # 1 turns dynamic batching off
    max_delay_ms: float = 2.0  # how long a batch waits for more requests
    threads: int | None = None  # intra-op threads per model (None: the runtime's default)
    workers: int = 4  # inference threads when batching is off
    drift_window: int = 1000  # live examples the drift score looks at
    cors_origins: tuple[str, ...] = ()  # CORS is off unless origins are named

    @property
    def batching(self) -> bool:
        return self.max_batch_size > 1


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
