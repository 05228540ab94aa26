"""The model server under load, side by side: dynamic batching vs none vs a naive FastAPI app.

(a) deepline: ``create_app(bundle, ServeSettings(max_batch_size=64, max_delay_ms=...))`` on
    ONNX Runtime, served by Uvicorn, ``POST /predict/{name}``;
(b) deepline without batching: ``ServeSettings(max_batch_size=1)`` (a pool of inference threads);
(c) naive: a minimal FastAPI app (below) that loads ``Bundle.torch_model()`` once and per
    request parses the JSON, normalises, runs the eager model under ``torch.no_grad`` and returns
    the top classes, in a plain ``def`` route (FastAPI runs it on its thread pool);
(d) the ceiling: ONNX Runtime in this process at batch 64, images per second, no HTTP;
(e) server (a) again, fed the same digits through KServe V2 with the binary tensor extension
    (raw UINT8 bytes after a small JSON header) instead of JSON lists of numbers.

Every server is a process of its own on 127.0.0.1 (``serving.py --serve KIND``) with the same
Uvicorn settings. The load comes from this process (``loadgen.py``): a closed loop keeping C
requests in flight on C keep-alive connections, for ``--seconds`` after a warm-up, at each
concurrency. Each request carries one real MNIST test digit as JSON
``{"inputs": [<28x28 uint8 nested list>]}`` (cycling over 256 digits), the same bytes for every
contender. Any answer but 200 is an error. Thread counts: ORT intra-op threads and torch threads
are ``--threads`` (default 1) in every server and in (d).

Besides req/s, p50/p99 latency and errors, each point reports the rows per model call that the
server's ``deepline_batch_size`` histogram saw, the server's CPU time per request on its event
loop thread and on its other threads (psutil), and the load generator's own CPU use.
``--profile`` runs each server's event loop under cProfile and prints its CPU by package.

The soak (part of the default run; ``--only soak`` alone, ``--only a,b,c,d`` without) sends
10,000 requests at concurrency 32 to a fresh (a), twice, and reports the server's resident
memory before, after the first and after the second 10,000. The run exits with status 1 if any
request failed.
Run: ``python benchmarks/serving.py --data-dir ../shared/data`` (about 4 minutes on 2 cores);
``--quick`` for a smoke run (1.5 s a point, concurrency 1 and 8, (a) and (c) only).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from loadgen import LoadResult, post, run_load
from pydantic import BaseModel
from serving_report import (
    NAMES,
    Point,
    Soak,
    console,
    machine,
    markdown,
    print_profile,
    print_soak,
    print_tables,
    target_lines,
)

HOST = "127.0.0.1"
KINDS = {"a": "batched", "b": "unbatched", "c": "naive", "e": "batched"}


# ------------------------------------------------------------------------- the servers
class PredictIn(BaseModel):
    """The naive server's request (module level: FastAPI resolves annotations by name)."""

    inputs: list[list[list[float]]]  # grey images (H, W), pixels 0..255
    top_k: int = 3


def naive_app(bundle_path: str, threads: int) -> Any:
    """What one writes without a serving library: one model, eager PyTorch, a ``def`` route."""
    import torch
    from fastapi import FastAPI

    from deepline.deploy.bundle import load_bundle

    torch.set_num_threads(threads)
    bundle = load_bundle(bundle_path)
    model = bundle.torch_model()
    pre = bundle.preprocessing
    mean = torch.tensor(pre["mean"], dtype=torch.float32).reshape(-1, 1, 1)
    std = torch.tensor(pre["std"], dtype=torch.float32).reshape(-1, 1, 1)
    classes = bundle.classes

    app = FastAPI()

    @app.post("/predict/{name}")
    def predict(name: str, body: PredictIn) -> dict[str, Any]:
        x = torch.tensor(body.inputs, dtype=torch.float32)[:, None] / 255  # (N, 1, H, W)
        with torch.no_grad():
            probs = model((x - mean) / std).softmax(-1)
        top = probs.topk(min(body.top_k, len(classes)), dim=-1)
        return {
            "model": name,
            "predictions": [
                [
                    {"class": classes[i], "index": i, "probability": p}
                    for p, i in zip(values.tolist(), indices.tolist())
                ]
                for values, indices in zip(top.values, top.indices)
            ],
        }

    return app


def serve(
    kind: str, bundle: str, port: int, threads: int, delay_ms: float, profile: str | None
) -> None:
    """The ``--serve KIND`` entry point: one server in the foreground until terminated,
    profiling its event loop thread into ``profile`` (cProfile) when given."""
    import torch
    import uvicorn

    from deepline.serve.app import create_app
    from deepline.serve.server import freeze_heap, uvicorn_config
    from deepline.serve.settings import ServeSettings

    torch.set_num_threads(threads)
    settings = ServeSettings(port=port, threads=threads, max_delay_ms=delay_ms)
    if kind == "naive":
        app = naive_app(bundle, threads)
    else:
        batch = 64 if kind == "batched" else 1
        settings = ServeSettings(
            port=port, threads=threads, max_batch_size=batch, max_delay_ms=delay_ms
        )
        app = create_app(bundle, settings)
    freeze_heap()  # as `deepline serve` does
    server = uvicorn.Server(uvicorn_config(app, settings))
    if not profile:
        return server.run()
    import cProfile
    import signal

    # Uvicorn shuts down on SIGTERM, then raises it again with the handler found at start
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # CPU time of this thread: waiting in epoll or for the GIL is not work
    with cProfile.Profile(time.thread_time) as profiler, contextlib.suppress(SystemExit):
        server.run()
    profiler.dump_stats(profile)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running server process: its port, pid and how to ask it things."""

    kind: str
    port: int
    process: subprocess.Popen  # type: ignore[type-arg]
    log: Path

    def cpu(self) -> tuple[float, float]:
        """CPU seconds so far of (the event loop thread, every other thread)."""
        import psutil

        threads = psutil.Process(self.process.pid).threads()
        loop = sum(t.user_time + t.system_time for t in threads if t.id == self.process.pid)
        return loop, sum(t.user_time + t.system_time for t in threads) - loop

    def rss_mib(self) -> float:
        import psutil

        return float(psutil.Process(self.process.pid).memory_info().rss) / 2**20

    def batch_histogram(self) -> tuple[float, float, dict[str, float]]:
        """deepline_batch_size so far: (rows, model calls, cumulative count per bucket)."""
        if self.kind == "naive":
            return 0.0, 0.0, {}
        conn = http.client.HTTPConnection(HOST, self.port, timeout=30)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
        found: dict[str, float] = {}  # "sum", "count" and each bucket's upper edge
        for part, labels, value in re.findall(
            r"^deepline_batch_size_(sum|count|bucket)\{(.*)\} (\S+)$", text, re.M
        ):
            edge = re.search(r'le="([^"]+)"', labels)
            key = edge.group(1) if edge else part
            found[key] = found.get(key, 0.0) + float(value)
        rows, calls = found.pop("sum", 0.0), found.pop("count", 0.0)
        return rows, calls, found


@contextmanager
def running(
    kind: str,
    bundle: str,
    threads: int,
    delay_ms: float,
    probe: bytes,
    profile: str | None = None,
) -> Iterator[Server]:
    """Start ``serving.py --serve KIND`` and wait until it answers ``probe`` with 200."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with tempfile.NamedTemporaryFile("w+b", suffix=".log", delete=False) as log:
        args = ["--serve", kind, "--port", str(port), "--bundle", bundle]
        args += ["--threads", str(threads), "--max-delay-ms", str(delay_ms)]
        args += ["--profile", profile] if profile else []
        process = subprocess.Popen(
            [sys.executable, __file__, *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    server = Server(kind, port, process, Path(log.name))
    try:
        _wait_ready(server, probe)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        server.log.unlink(missing_ok=True)


def _wait_ready(server: Server, probe: bytes) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the {server.kind} server exited:\n{server.log.read_text()}")
        try:
            with socket.create_connection((HOST, server.port), timeout=30) as s:
                s.sendall(probe)
                answer = s.recv(4096)
        except OSError:
            answer = b""
        if answer.startswith(b"HTTP/1.1 200"):
            return
        if answer.startswith(b"HTTP/"):  # up, but refusing the request: no use waiting
            raise RuntimeError(f"the {server.kind} server answered {answer[:400]!r}")
        time.sleep(0.2)
    raise RuntimeError(f"the {server.kind} server did not answer 200 within 120 s")


# ------------------------------------------------------------------------- model and payload
def train_bundle(data_dir: str, root: Path, limit: int) -> Path:
    """``configs/mnist_lenet.yaml``'s model, trained one epoch on ``limit`` images, exported."""
    from deepline.config import load_config
    from deepline.deploy.export import export_run
    from deepline.training.experiment import run_training

    overrides = {
        "data.data_dir": data_dir,
        "data.limit": limit,
        "train.epochs": 1,
        "train.tensorboard": False,
        "export.formats": ["onnx"],
    }
    run = run_training(load_config("mnist_lenet", overrides), root / "runs").run_dir
    return Path(export_run(run)["bundle"])


def mnist_digits(data_dir: str, n: int = 256) -> np.ndarray:
    """The first ``n`` MNIST test images, (n, 28, 28) uint8."""
    from deepline.data.readers import read_idx

    path = next((Path(data_dir) / "mnist").glob("t10k-images*"), None)
    if path is None:
        raise SystemExit(f"no MNIST test images under {Path(data_dir) / 'mnist'}: see --data-dir")
    return np.asarray(read_idx(path)[:n], dtype=np.uint8)


def bodies(digits: np.ndarray) -> list[bytes]:
    return [json.dumps({"inputs": [d.tolist()]}, separators=(",", ":")).encode() for d in digits]


def v2_bodies(digits: np.ndarray) -> list[tuple[bytes, int]]:
    """KServe V2 requests with the binary tensor extension: (body, JSON header length)."""
    out = []
    for d in digits:
        raw = np.ascontiguousarray(d, dtype=np.uint8).tobytes()
        header = json.dumps(
            {
                "inputs": [
                    {
                        "name": "input",
                        "datatype": "UINT8",
                        "shape": [1, 1, *d.shape],
                        "parameters": {"binary_data_size": len(raw)},
                    }
                ],
                "outputs": [{"name": "label"}],
            },
            separators=(",", ":"),
        ).encode()
        out.append((header + raw, len(header)))
    return out


def model_name(bundle: str) -> str:
    from deepline.serve.repository import scan

    return scan(bundle)[0].name


# ------------------------------------------------------------------------- measuring
def measure(
    server: Server, requests: list[bytes], c: int, seconds: float, warmup: float, key: str
) -> Point:
    rows0, calls0, buckets0 = server.batch_histogram()
    loop0, other0 = server.cpu()
    result: LoadResult = asyncio.run(
        run_load(HOST, server.port, requests, c, seconds=seconds, warmup=warmup)
    )
    loop1, other1 = server.cpu()
    rows1, calls1, buckets1 = server.batch_histogram()
    # the CPU times include the warm-up: divide by every request sent, not only those counted
    sent = max(1, round(result.done * (seconds + warmup) / seconds))
    calls = calls1 - calls0
    return Point(
        name=NAMES[key],
        concurrency=c,
        rate=result.rate,
        p50=result.percentile(50),
        p99=result.percentile(99),
        errors=result.errors,
        first_error=result.first_error,
        mean_batch=(rows1 - rows0) / calls if calls else float("nan"),
        batch_buckets={k: v - buckets0.get(k, 0.0) for k, v in buckets1.items()},
        loop_ms=(loop1 - loop0) * 1000 / sent,
        other_ms=(other1 - other0) * 1000 / sent,
        client_cpu=result.client_cpu_s / result.seconds,
        sent=sent,
    )


def ceiling(bundle: str, digits: np.ndarray, threads: int, seconds: float) -> float:
    """Images per second of ONNX Runtime alone at batch 64, on ``threads`` threads."""
    from deepline.deploy.bundle import load_bundle
    from deepline.deploy.onnx_export import onnx_session

    pre = load_bundle(bundle).preprocessing
    mean = np.asarray(pre["mean"], dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(pre["std"], dtype=np.float32).reshape(-1, 1, 1)
    x = ((digits[:, None].astype(np.float32) / 255 - mean) / std).astype(np.float32)
    batches = [x[i : i + 64] for i in range(0, len(x) - 63, 64)]
    session = onnx_session(Path(bundle) / "model.onnx", threads)
    images = 0
    for b in batches:  # warm-up
        session.run(None, {"input": b})
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for b in batches:
            session.run(None, {"input": b})
            images += len(b)
    return images / (time.perf_counter() - t0)


def soak(
    bundle: str,
    requests_for: Callable[[int], list[bytes]],
    threads: int,
    delay_ms: float,
    n: int,
    probe: bytes,
) -> Soak:
    """``n`` requests at concurrency 32 to a fresh (a), twice; resident memory around them."""
    with running("batched", bundle, threads, delay_ms, probe) as server:
        requests = requests_for(server.port)
        rss = [("started", server.rss_mib())]
        asyncio.run(run_load(HOST, server.port, requests, 32, total=1000))
        rss.append(("after 1,000 warm-up", server.rss_mib()))
        errors, first, rates = 0, "", []
        for i in (1, 2):
            result = asyncio.run(run_load(HOST, server.port, requests, 32, total=n))
            errors += result.errors
            first = first or result.first_error
            rates.append(result.rate)
            rss.append((f"after {i * n:,}", server.rss_mib()))
    return Soak(n, rss, errors, first, rates)


# ------------------------------------------------------------------------- main
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("DEEPLINE_DATA_DIR", "../shared/data"))
    parser.add_argument("--bundle", default=None, help="an MNIST bundle (default: train one)")
    parser.add_argument("--train-limit", type=int, default=6000, help="images to train on")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured, per point")
    parser.add_argument("--warmup", type=float, default=2.0, help="not measured, per point")
    parser.add_argument("--concurrency", default="1,8,32,64")
    parser.add_argument("--only", default="a,b,c,d,e,soak", help="of a,b,c,d,e,soak")
    parser.add_argument("--threads", type=int, default=1, help="ORT/torch threads per server")
    parser.add_argument("--max-delay-ms", type=float, default=2.0, help="(a)'s batching delay")
    parser.add_argument("--soak-requests", type=int, default=10_000)
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1.5 s a point, c=1,8, (a) and (c)"
    )
    parser.add_argument("--serve", choices=sorted(KINDS.values()), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument(
        "--profile",
        default=None,
        help="profile each server's event loop thread (cProfile) and print where it spends "
        "its time; with --serve: the stats file",
    )
    args = parser.parse_args()
    unknown = set(args.only.split(",")) - {"a", "b", "c", "d", "e", "soak"}
    if unknown:
        parser.error(f"--only: unknown {', '.join(sorted(unknown))}; choose from a,b,c,d,e,soak")
    if args.quick:
        args.seconds, args.warmup, args.concurrency, args.only = 1.5, 0.5, "1,8", "a,c"
    return args


def main() -> None:
    args = parse_args()
    if args.serve:
        return serve(
            args.serve, args.bundle, args.port, args.threads, args.max_delay_ms, args.profile
        )
    only = args.only.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        if args.bundle is None:
            console.rule("training a bundle (configs/mnist_lenet.yaml's model, 1 epoch)")
            args.bundle = str(train_bundle(args.data_dir, Path(tmp), args.train_limit))
        digits = mnist_digits(args.data_dir)
        payload = bodies(digits)
        route = f"/predict/{model_name(args.bundle)}"

        def requests_for(port: int) -> list[bytes]:
            return [post(HOST, port, route, b) for b in payload]

        v2_route = f"/v2/models/{model_name(args.bundle)}/infer"
        v2_payload = v2_bodies(digits)

        def v2_requests_for(port: int) -> list[bytes]:
            return [
                post(
                    HOST,
                    port,
                    v2_route,
                    body,
                    "application/octet-stream",
                    {"Inference-Header-Content-Length": str(n)},
                )
                for body, n in v2_payload
            ]

        probe = post(HOST, 0, route, payload[0])
        points: list[Point] = []
        for key in (k for k in "abce" if k in only):
            console.rule(NAMES[key])
            profile = f"{tmp}/{key}.prof" if args.profile else None
            with running(
                KINDS[key], args.bundle, args.threads, args.max_delay_ms, probe, profile
            ) as s:
                make = v2_requests_for if key == "e" else requests_for
                for c in (int(x) for x in args.concurrency.split(",")):
                    point = measure(s, make(s.port), c, args.seconds, args.warmup, key)
                    console.print(
                        f"  c={c}: {point.rate:.0f} req/s, p50 {point.p50:.1f} ms, "
                        f"p99 {point.p99:.1f} ms, {point.errors} errors",
                        highlight=False,
                    )
                    points.append(point)
            if profile:
                sent = sum(p.sent for p in points if p.name == NAMES[key])
                print_profile(NAMES[key], profile, sent)
        ceil: dict[int, float] = {}
        if "d" in only:
            console.rule(NAMES["d"])
            for t in sorted({args.threads, os.cpu_count() or 1}):
                ceil[t] = ceiling(args.bundle, digits, t, min(args.seconds, 5.0))
        result = None
        if "soak" in only:
            console.rule("soak")
            n = args.soak_requests
            result = soak(args.bundle, requests_for, args.threads, args.max_delay_ms, n, probe)
    console.rule("results")
    console.print(machine(args.threads, args.max_delay_ms), highlight=False)
    print_tables(points, ceil)
    targets = target_lines(points, ceil)
    for line in targets:
        console.print(line, highlight=False)
    if result is not None:
        print_soak(result)
    console.rule("for benchmarks/RESULTS.md")
    print(markdown(args, points, ceil, targets, result))
    if sum(p.errors for p in points) or (result is not None and result.errors):
        sys.exit("errors: a benchmark with failed requests measures nothing")


if __name__ == "__main__":
    main()
