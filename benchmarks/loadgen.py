"""A closed-loop HTTP load generator that stays cheap next to the server it measures.

``concurrency`` coroutines each hold one keep-alive HTTP/1.1 connection and one request in
flight: send a prebuilt request, read the answer (status line, headers, a body of
Content-Length bytes), send the next. No HTTP library, no JSON decoding: a request costs the
client a few tens of microseconds, so on a machine of 2 cores it is the server that is measured.

>>> bodies = [b'{"inputs": [[[0, 0], [0, 0]]]}']                              # doctest: +SKIP
>>> requests = [post("127.0.0.1", 8000, "/predict/mnist", b) for b in bodies]  # doctest: +SKIP
>>> asyncio.run(run_load("127.0.0.1", 8000, requests, concurrency=8, seconds=5)).rate
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field


def post(
    host: str,
    port: int,
    path: str,
    body: bytes,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> bytes:
    """The bytes of one keep-alive ``POST path`` request carrying ``body``."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\n"
        f"{extra}Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@dataclass
class LoadResult:
    """What one load point measured. Latencies are of requests answered inside the window."""

    concurrency: int
    seconds: float  # length of the measurement window
    latencies: list[float] = field(default_factory=list)  # seconds, answered with 200
    errors: int = 0  # answers other than 200, broken connections
    client_cpu_s: float = 0.0  # CPU time of this (client) process over the window
    first_error: str = ""

    @property
    def done(self) -> int:
        return len(self.latencies) + self.errors

    @property
    def rate(self) -> float:
        """Requests per second answered with 200."""
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile of latency in milliseconds (nearest rank)."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        rank = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
        return ordered[rank] * 1000


class _Window:
    """Which answers count: those arriving in [start, end) (``end`` None: until ``total``)."""

    def __init__(self, start: float, end: float | None, total: int | None) -> None:
        self.start, self.end, self.total = start, end, total
        self.issued = 0

    def more(self, now: float) -> bool:
        if self.total is not None:
            self.issued += 1
            return self.issued <= self.total
        return self.end is None or now < self.end

    def counts(self, sent: float, answered: float) -> bool:
        if self.total is not None:
            return True
        return sent >= self.start and (self.end is None or answered < self.end)


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    """Send one request and read its answer: (status, body)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    at = lower.find(b"\r\ncontent-length:")
    if at < 0:  # our servers always send Content-Length; anything else is an error here
        raise ConnectionError("an answer without Content-Length")
    length = int(lower[at + 17 : lower.index(b"\r\n", at + 2)])
    body = await reader.readexactly(length)
    if b"\r\nconnection: close" in lower:
        raise ConnectionResetError("the server closed the connection")
    return status, body


async def _client(
    host: str,
    port: int,
    requests: Sequence[bytes],
    order: itertools.count,  # type: ignore[type-arg]
    window: _Window,
    result: LoadResult,
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while window.more(time.perf_counter()):
            request = requests[next(order) % len(requests)]
            sent = time.perf_counter()
            try:
                status, body = await _exchange(reader, writer, request)
            except (OSError, asyncio.IncompleteReadError, ValueError) as err:
                status, body = 0, repr(err).encode()
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
            answered = time.perf_counter()
            if not window.counts(sent, answered):
                continue
            if status == 200:
                result.latencies.append(answered - sent)
            else:
                result.errors += 1
                result.first_error = result.first_error or f"{status}: {body[:200]!r}"
    finally:
        writer.close()


async def run_load(
    host: str,
    port: int,
    requests: Sequence[bytes],
    concurrency: int,
    seconds: float | None = None,
    total: int | None = None,
    warmup: float = 0.0,
) -> LoadResult:
    """Keep ``concurrency`` requests in flight, cycling through ``requests``: for ``warmup``
    seconds (not counted) and then ``seconds``, or for ``total`` requests."""
    if (seconds is None) == (total is None):
        raise ValueError("give either seconds or total")
    result = LoadResult(concurrency, 0.0)
    gc.collect()
    gc.freeze()  # the client's own pauses would show up as server latency
    start = time.perf_counter() + (warmup if seconds is not None else 0.0)
    end = start + seconds if seconds is not None else None
    window = _Window(start, end, total)
    order = itertools.count()
    cpu = 0.0
    clients = [
        asyncio.create_task(_client(host, port, requests, order, window, result))
        for _ in range(concurrency)
    ]
    if seconds is not None:
        await asyncio.sleep(max(0.0, start - time.perf_counter()))
    cpu = time.process_time()
    began = time.perf_counter()
    await asyncio.gather(*clients)
    result.client_cpu_s = time.process_time() - cpu
    result.seconds = seconds if seconds is not None else time.perf_counter() - began
    gc.unfreeze()
    return result
