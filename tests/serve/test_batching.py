"""The dynamic batcher: requests that arrive together share a model call, and each request gets
exactly its own rows back."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from deepline.serve.batching import Batcher


class Recorder:
    """A model that returns each row's sum and its batch's size, noting every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, ...]] = []
        self.threads: set[str] = set()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.calls.append(batch.shape)
        self.threads.add(threading.current_thread().name)
        rows = batch.reshape(len(batch), -1)
        return np.stack([rows.sum(1), np.full(len(batch), len(batch))], axis=1)


async def _submit_all(batcher: Batcher, batches: list[np.ndarray]) -> list[np.ndarray]:
    try:
        return await asyncio.gather(*(batcher.submit(b) for b in batches))
    finally:
        await batcher.close()


def test_concurrent_requests_are_batched_and_never_mixed_up() -> None:
    model = Recorder()
    batcher = Batcher(model, max_batch_size=16, max_delay_s=0.05, inline_s=0.0)  # all threaded
    rng = np.random.default_rng(0)
    batches = [rng.normal(size=(int(rng.integers(1, 4)), 3)) for _ in range(40)]
    outputs = asyncio.run(_submit_all(batcher, batches))
    for batch, out in zip(batches, outputs):
        assert out.shape == (len(batch), 2)
        np.testing.assert_allclose(out[:, 0], batch.sum(1))  # its own rows, in order
    assert sum(shape[0] for shape in model.calls) == sum(len(b) for b in batches)
    assert max(shape[0] for shape in model.calls) <= 16
    assert len(model.calls) < len(batches) / 2  # requests really were joined
    assert all(name.startswith("deepline-infer") for name in model.threads)  # off the loop


class Slow(Recorder):
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import time

        time.sleep(0.1)  # far past the inline limit below, however loaded the machine
        return super().__call__(batch)


@pytest.mark.parametrize("batch_size", [1, 16])
def test_quick_calls_stay_on_the_event_loop_and_slow_ones_go_to_a_thread(batch_size: int) -> None:
    """The first call runs on a thread (its time is unknown); later ones run where their
    expected time (per row, as measured) says: a hop to a thread costs more than a quick call."""
    quick, slow = Recorder(), Slow()

    async def three_in_turn(batcher: Batcher) -> None:
        try:
            for _ in range(3):
                await batcher.submit(np.ones((1, 3)))
        finally:
            await batcher.close()

    for model in (quick, slow):
        # a limit far above a quick call's microseconds, even on a machine busy elsewhere
        asyncio.run(three_in_turn(Batcher(model, max_batch_size=batch_size, inline_s=0.02)))
    assert any(name.startswith("deepline-infer") for name in quick.threads)  # the first
    assert threading.current_thread().name in quick.threads  # then on the loop
    assert all(name.startswith("deepline-infer") for name in slow.threads)


def test_rows_of_different_shapes_or_dtypes_run_in_separate_calls() -> None:
    model = Recorder()
    batcher = Batcher(model, max_batch_size=64, max_delay_s=0.05)
    batches = [np.ones((1, 3)), np.ones((2, 5)), np.ones((1, 3), dtype=np.float32), np.ones((1, 3))]
    outputs = asyncio.run(_submit_all(batcher, batches))
    assert [out[0, 0] for out in outputs] == [3, 5, 3, 3]
    assert sorted(model.calls) == [(1, 3), (2, 3), (2, 5)]


def test_a_request_larger_than_the_batch_limit_runs_whole() -> None:
    model = Recorder()
    outputs = asyncio.run(_submit_all(Batcher(model, max_batch_size=4), [np.ones((10, 2))]))
    assert outputs[0].shape == (10, 2) and model.calls == [(10, 2)]


def test_a_failing_model_fails_every_request_of_its_batch_and_the_next_batch_runs() -> None:
    calls = []

    def flaky(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("model exploded")
        return batch

    async def scenario() -> list[object]:
        batcher = Batcher(flaky, max_batch_size=8, max_delay_s=0.05)
        first = await asyncio.gather(
            *(batcher.submit(np.ones((1, 2))) for _ in range(3)), return_exceptions=True
        )
        second = await batcher.submit(np.zeros((1, 2)))
        await batcher.close()
        return [*first, second]

    results = asyncio.run(scenario())
    assert all(isinstance(r, RuntimeError) for r in results[:3])
    np.testing.assert_array_equal(results[3], np.zeros((1, 2)))


def test_without_batching_every_request_runs_alone() -> None:
    model = Recorder()
    batches = [np.full((1, 2), i) for i in range(12)]
    outputs = asyncio.run(_submit_all(Batcher(model, max_batch_size=1, workers=3), batches))
    assert [out[0, 0] for out in outputs] == [2 * i for i in range(12)]
    assert model.calls == [(1, 2)] * 12


def test_observer_sees_batch_sizes_and_queue_times() -> None:
    seen: list[tuple[int, int]] = []
    batcher = Batcher(
        Recorder(),
        max_batch_size=8,
        max_delay_s=0.05,
        on_batch=lambda rows, waits: seen.append((rows, len(waits))),
    )
    asyncio.run(_submit_all(batcher, [np.ones((2, 2))] * 4))
    assert sum(rows for rows, _ in seen) == 8
    assert sum(n for _, n in seen) == 4


@pytest.mark.parametrize("delay", [0.0, 0.01])
def test_works_with_no_delay_and_across_event_loops(delay: float) -> None:
    model = Recorder()
    batcher = Batcher(model, max_batch_size=8, max_delay_s=delay)

    async def once(value: float) -> np.ndarray:
        return await batcher.submit(np.full((1, 1), value))

    assert asyncio.run(once(1.0))[0, 0] == 1.0
    assert asyncio.run(once(2.0))[0, 0] == 2.0  # a new loop: the batcher starts over on it


def test_a_lone_request_does_not_wait_for_company() -> None:
    from deepline.serve.batching import Arrivals

    arrivals = Arrivals()
    model = Recorder()
    batcher = Batcher(model, max_batch_size=8, max_delay_s=60.0, arrivals=arrivals)

    async def alone() -> np.ndarray:
        arrivals.in_flight += 1  # as the HTTP middleware counts it
        try:
            return await asyncio.wait_for(batcher.submit(np.ones((1, 2))), timeout=20)
        finally:
            arrivals.in_flight -= 1
            await batcher.close()

    assert asyncio.run(alone())[0, 0] == 2  # with 60 s of patience it would have timed out
    assert arrivals.held == 0


def test_requests_on_their_way_are_waited_for() -> None:
    from deepline.serve.batching import Arrivals

    arrivals = Arrivals()
    model = Recorder()
    batcher = Batcher(model, max_batch_size=8, max_delay_s=5.0, arrivals=arrivals)

    async def two() -> list[np.ndarray]:
        arrivals.in_flight += 2  # two requests in flight; the second is still being parsed

        async def late() -> np.ndarray:
            await asyncio.sleep(0.05)
            return await batcher.submit(np.ones((1, 2)))

        try:
            return await asyncio.gather(batcher.submit(np.ones((1, 2))), late())
        finally:
            await batcher.close()

    asyncio.run(two())
    assert model.calls == [(2, 2)]  # the first waited for the second
