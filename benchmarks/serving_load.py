"""Servers under a C load generator: deepline's protocols against a bare ASGI ceiling and peers.

Every server is a process of its own on 127.0.0.1, pinned with ``taskset`` to CPU 0 (one
worker), and ``wrk`` (Debian's, C, one thread) drives it from CPU 1 with a Lua script that
POSTs the same body every time: a digit of scikit-learn's 8x8 digits (the ``make demo``
bundle) or an MNIST digit (the LeNet bundle), as KServe V2 JSON (``FP32`` numbers), KServe V2
binary (the ``binary_tensor_data`` extension: raw little-endian floats after the JSON
header), or deepline's own ``/predict`` JSON. Each point runs ``--seconds`` after a one-second
warm-up, at concurrency 1, 8, 32 and 64 (``wrk -c``); any answer but 200 counts as an error.

Contenders (``--servers``):

- ``ceiling``: a bare ASGI callable on the same Uvicorn + httptools + uvloop that reads the
  body, parses its JSON and answers a constant JSON: what the HTTP stack carries at most;
- ``v2-json``, ``v2-binary``, ``predict``: ``deepline serve BUNDLE --workers 1`` (batching on);
- ``naive``: benchmarks/serving.py's naive FastAPI endpoint (eager PyTorch in a ``def`` route).

Peers in their own venvs are added by ``--peers`` (see ``serving_peers.py``).

Run: ``python benchmarks/serving_load.py --bundle runs/digits_lenet/<time>/bundle``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from resumable_runs import machine
from rich.console import Console
from rich.table import Table

HOST = "127.0.0.1"
HERE = Path(__file__).resolve().parent
SERVER_CPU, LOAD_CPU = "0", "1"


# -- the bare ASGI ceiling -----------------------------------------------------------------------


async def ceiling_app(scope, receive, send):  # type: ignore[no-untyped-def]
    """Reads the whole body, parses its JSON, answers a constant JSON object."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    json.loads(body)
    answer = b'{"ok":true}'
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(answer)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": answer})


def serve_ceiling(port: int) -> None:
    import uvicorn

    uvicorn.run(ceiling_app, host=HOST, port=port, loop="uvloop", http="httptools",
                log_level="warning", access_log=False)  # fmt: skip


# -- bodies ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Body:
    path: str
    data: bytes
    headers: dict[str, str]


def digit(bundle: Path) -> np.ndarray:
    """One input the bundle's model reads, as floats in [0, 1] shaped like its signature."""
    spec = json.loads((bundle / "bundle.json").read_text())["signature"]["inputs"][0]
    shape = [1 if d == -1 else d for d in spec["shape"]]
    rng = np.random.default_rng(0)
    return rng.random(shape).astype(np.float32)


def bodies(bundle: Path, name: str) -> dict[str, Body]:
    x = digit(bundle)
    tensor = {"name": "input", "shape": list(x.shape), "datatype": "FP32"}
    infer = f"/v2/models/{name}/infer"
    json_body = json.dumps({"inputs": [{**tensor, "data": x.reshape(-1).tolist()}]}).encode()
    header = json.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": x.nbytes}}]})
    binary = header.encode() + x.astype("<f4").tobytes()
    json_type = {"Content-Type": "application/json"}
    return {
        "v2-json": Body(infer, json_body, json_type),
        "v2-binary": Body(infer, binary, {"Content-Type": "application/octet-stream",
                                          "Inference-Header-Content-Length": str(len(header))}),
        "predict": Body(f"/predict/{name}", json.dumps({"inputs": x.tolist()}).encode(),
                        json_type),
        "ceiling": Body(infer, json_body, json_type),
    }  # fmt: skip


# -- wrk -------------------------------------------------------------------------------------------


@dataclass
class Point:
    server: str
    concurrency: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int


LUA = """
local f = io.open("{body}", "rb")
wrk.body = f:read("*all")
f:close()
wrk.method = "POST"
{headers}
local errors = 0
response = function(status, headers, body)
  if status ~= 200 then errors = errors + 1 end
end
done = function(summary, latency, requests)
  io.write(string.format("JSON {{\\"p50\\": %f, \\"p99\\": %f, \\"requests\\": %d, " ..
    "\\"non200\\": %d, \\"socket\\": %d}}\\n", latency:percentile(50), latency:percentile(99),
    summary.requests, summary.errors.status, summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout))
end
"""


def wrk(url: str, body: Body, concurrency: int, seconds: float, work: Path) -> dict:
    data = work / "body.bin"
    data.write_bytes(body.data)
    headers = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in body.headers.items())
    script = work / "post.lua"
    script.write_text(LUA.format(body=data, headers=headers))

    def command(duration: int) -> list[str]:
        return ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{concurrency}", f"-d{duration}s",
                "--timeout", "10s", "-s", str(script), url + body.path]  # fmt: skip

    subprocess.run(command(1), check=True, capture_output=True)  # warm-up
    out = subprocess.run(command(round(seconds)), check=True, capture_output=True, text=True).stdout
    stats = json.loads(out.split("JSON ", 1)[1].splitlines()[0])
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return {"rps": rps, **stats}


# -- servers ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _wait(port: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex((HOST, port)) == 0:
                time.sleep(0.5)
                return
        time.sleep(0.2)
    raise TimeoutError("server did not start")


@contextmanager
def server(command: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[None]:
    pinned = ["taskset", "-c", SERVER_CPU, *command]
    proc = subprocess.Popen(pinned, env={**os.environ, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        _wait(port, proc)
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def command_for(kind: str, bundle: Path, port: int) -> list[str]:
    if kind == "ceiling":
        return [sys.executable, str(HERE / "serving_load.py"), "--serve-ceiling", str(port)]
    if kind == "naive":
        return [sys.executable, str(HERE / "serving.py"), "--serve", "naive", "--bundle",
                str(bundle), "--port", str(port)]  # fmt: skip
    return [sys.executable, "-m", "deepline", "serve", str(bundle), "--port", str(port),
            "--workers", "1"]  # fmt: skip


SERVER_OF = {"ceiling": "ceiling", "v2-json": "deepline", "v2-binary": "deepline",
             "predict": "deepline", "naive": "naive"}  # fmt: skip


def measure(bundle: Path, contenders: list[str], levels: list[int], seconds: float) -> list[Point]:
    name = json.loads((bundle / "bundle.json").read_text()).get("name") or "model"
    points: list[Point] = []
    by_server: dict[str, list[str]] = {}
    for contender in contenders:
        by_server.setdefault(SERVER_OF[contender], []).append(contender)
    with tempfile.TemporaryDirectory() as tmp:
        for kind, served in by_server.items():
            port = free_port()
            with server(command_for(kind, bundle, port), port):
                for contender in served:
                    body = bodies(bundle, name)[contender]
                    for c in levels:
                        r = wrk(f"http://{HOST}:{port}", body, c, seconds, Path(tmp))
                        points.append(Point(contender, c, r["rps"], r["p50"] / 1000,
                                            r["p99"] / 1000, r["non200"] + r["socket"],
                                            r["requests"]))  # fmt: skip
                        print(points[-1], flush=True)
    return points


def show(points: list[Point], title: str) -> None:
    table = Table(title=title)
    for column in ("server", "concurrency", "req/s", "p50 ms", "p99 ms", "errors"):
        table.add_column(column, justify="left" if column == "server" else "right")
    for p in points:
        table.add_row(p.server, str(p.concurrency), f"{p.rps:,.0f}", f"{p.p50_ms:.2f}",
                      f"{p.p99_ms:.2f}", str(p.errors))  # fmt: skip
    Console().print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", type=Path, required=False)
    parser.add_argument("--servers", default="ceiling,v2-json,v2-binary,predict,naive")
    parser.add_argument("--concurrency", default="1,8,32,64")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--serve-ceiling", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_ceiling is not None:
        return serve_ceiling(args.serve_ceiling)
    levels = [int(c) for c in args.concurrency.split(",")]
    points = measure(args.bundle, args.servers.split(","), levels, args.seconds)
    show(points, f"{args.bundle} under wrk, server on CPU {SERVER_CPU}, wrk on CPU {LOAD_CPU} "
                 f"({machine()})")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps([asdict(p) for p in points], indent=1))


if __name__ == "__main__":
    main()
