"""Dynamic batching: requests that arrive together run as one batch, off the event loop.

Each request carries a batch of one or more rows. The batcher waits up to ``max_delay_s`` after
the first request for others, joins requests whose rows have the same shape and dtype up to
``max_batch_size`` rows, runs them in one call on an inference thread, and hands each request
exactly its own rows back. Given the server's ``Arrivals``, it waits only while other requests
are on their way, so a lone request runs at once. With ``max_batch_size`` 1 every request runs
on its own, on a pool of ``workers`` threads.

A model call expected to take less than ``inline_s`` (from the time per row its calls took so
far) runs on the event loop itself: handing it to a thread and back costs more than that.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

Run = Callable[[np.ndarray], np.ndarray]
OnBatch = Callable[[int, list[float]], None]  # (rows, queue seconds of each request)


class Arrivals:
    """Requests the server is handling that have not reached a batcher yet.

    The server counts every request in flight; batchers count those they hold. A batcher waits
    for more requests only while others are on their way, so a lone request never waits.
    """

    def __init__(self) -> None:
        self.in_flight = 0  # requests being handled (the HTTP middleware counts them)
        self.held = 0  # requests inside a batcher, queued or running

    @property
    def expected(self) -> int:
        return self.in_flight - self.held


@dataclass
class _Pending:
    batch: np.ndarray
    future: asyncio.Future[np.ndarray]
    queued_at: float = field(default_factory=time.perf_counter)

    @property
    def key(self) -> tuple[tuple[int, ...], str]:
        return self.batch.shape[1:], self.batch.dtype.str


class Batcher:
    def __init__(
        self,
        run: Run,
        max_batch_size: int = 64,
        max_delay_s: float = 0.002,
        workers: int = 4,
        on_batch: OnBatch | None = None,
        arrivals: Arrivals | None = None,
        inline_s: float = 0.0005,
    ) -> None:
        self.run = run
        self.inline_s = inline_s
        self.row_s: float | None = None  # moving average of a call's seconds per row
        self.arrivals = arrivals  # None: always wait up to max_delay_s for company
        self.max_batch_size = max(1, max_batch_size)
        self.max_delay_s = max_delay_s
        self.on_batch = on_batch
        threads = 1 if self.batching else max(1, workers)
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="deepline-infer")
        self._pending: deque[_Pending] = deque()  # in arrival order
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def batching(self) -> bool:
        return self.max_batch_size > 1

    async def submit(self, batch: np.ndarray) -> np.ndarray:
        """The model's outputs for ``batch`` (rows in, the same number of rows out)."""
        loop = asyncio.get_running_loop()
        if not self.batching:
            out = await self._call(loop, batch)
            if self.on_batch:
                self.on_batch(len(batch), [0.0])
            return out
        if self._task is None or self._task.done():  # first use on this event loop
            self._arrived = asyncio.Event()
            self._task = loop.create_task(self._loop())
        pending = _Pending(batch, loop.create_future())
        self._pending.append(pending)
        self._arrived.set()
        if self.arrivals is None:
            return await pending.future
        self.arrivals.held += 1
        try:
            return await pending.future
        finally:
            self.arrivals.held -= 1

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
            key = self._pending[0].key
            deadline = loop.time() + self.max_delay_s
            while self._rows(key) < self.max_batch_size and self._company_coming():
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), timeout)
                except asyncio.TimeoutError:
                    break
            group = self._take(key)
            if group:
                await self._run_group(loop, group)

    def _company_coming(self) -> bool:
        return self.arrivals is None or self.arrivals.expected > 0

    def _rows(self, key: tuple[tuple[int, ...], str]) -> int:
        return sum(len(p.batch) for p in self._pending if p.key == key)

    def _take(self, key: tuple[tuple[int, ...], str]) -> list[_Pending]:
        """The oldest requests with rows like ``key``, up to ``max_batch_size`` rows (at least
        one request, however large), leaving the rest queued in order."""
        group: list[_Pending] = []
        rest: deque[_Pending] = deque()
        rows = 0
        for p in self._pending:
            fits = p.key == key and (not group or rows + len(p.batch) <= self.max_batch_size)
            if fits and not p.future.cancelled():  # a cancelled caller gave up waiting
                group.append(p)
                rows += len(p.batch)
            elif not p.future.cancelled():
                rest.append(p)
        self._pending = rest
        return group

    async def _run_group(self, loop: asyncio.AbstractEventLoop, group: list[_Pending]) -> None:
        started = time.perf_counter()
        joined = np.concatenate([p.batch for p in group]) if len(group) > 1 else group[0].batch
        try:
            out = await self._call(loop, joined)
        except Exception as err:  # the model failed: every request in the batch gets the error
            for p in group:
                if not p.future.done():
                    p.future.set_exception(err)
            return
        if self.on_batch:
            self.on_batch(len(joined), [started - p.queued_at for p in group])
        offset = 0
        for p in group:
            n = len(p.batch)
            if not p.future.done():
                p.future.set_result(out[offset : offset + n])
            offset += n

    async def _call(self, loop: asyncio.AbstractEventLoop, batch: np.ndarray) -> np.ndarray:
        """``run(batch)``: on the event loop when it is expected to be quick, else on a thread;
        either way timed, to expect the next."""
        inline = self.row_s is not None and self.row_s * len(batch) < self.inline_s
        started = time.perf_counter()
        out = self.run(batch) if inline else await loop.run_in_executor(self.executor, self.run,
                                                                         batch)  # fmt: skip
        per_row = (time.perf_counter() - started) / max(1, len(batch))
        self.row_s = per_row if self.row_s is None else 0.9 * self.row_s + 0.1 * per_row
        return out
