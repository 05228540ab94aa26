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
PINNED = True  # --unpinned: every process anywhere (the workers comparison)


def pin(cpu: str) -> list[str]:
    """``taskset -c CPU`` (nothing when unpinned)."""
    return ["taskset", "-c", cpu] if PINNED else []


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
    """One input the bundle's model reads, as floats in [0, 1]: shaped like the bundle's own
    test example (so a sequence has its real length), or like its signature."""
    from safetensors.numpy import load_file

    spec = json.loads((bundle / "bundle.json").read_text())["signature"]["inputs"][0]
    shape = [1 if d == -1 else d for d in spec["shape"]]
    examples = bundle / "examples.safetensors"
    if examples.is_file():
        shape = [1, *load_file(str(examples))["test_x"].shape[1:]]
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
        # the naive app reads grey (N, H, W) pixels in 0..255
        "naive": Body(f"/predict/{name}",
                      json.dumps({"inputs": (x[:, 0] * 255).round().tolist()}).encode(),
                      json_type),
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
        return [*pin(LOAD_CPU), "wrk", "-t1", f"-c{concurrency}", f"-d{duration}s",
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
    pinned = [*pin(SERVER_CPU), *command]
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


def grpc_body(bundle: Path, name: str) -> bytes:
    """One ModelInfer request of the KServe V2 gRPC service, framed as gRPC sends it (a
    flag byte and the message's length before it), raw FP32 contents."""
    from tritonclient.grpc import service_pb2

    x = digit(bundle)
    request = service_pb2.ModelInferRequest(model_name=name)
    tensor = request.inputs.add()
    tensor.name, tensor.datatype = "input", "FP32"
    tensor.shape.extend(x.shape)
    request.raw_input_contents.append(x.astype("<f4").tobytes())
    message = request.SerializeToString()
    return b"\x00" + len(message).to_bytes(4, "big") + message


def h2load(port: int, data: bytes, concurrency: int, seconds: float, work: Path) -> dict:
    """gRPC load from h2load (nghttp2's C client): one stream per connection, its per-request
    log read for percentiles; a response counts as an error unless HTTP 200."""
    body, log = work / "grpc.bin", work / "h2load.log"
    body.write_bytes(data)
    log.unlink(missing_ok=True)
    url = f"http://{HOST}:{port}/inference.GRPCInferenceService/ModelInfer"
    headers = ["-H", "content-type: application/grpc", "-H", "te: trailers"]
    command = [*pin(LOAD_CPU), "h2load", "-c", str(concurrency), "-m", "1", "-D",
               str(round(seconds)), "--warm-up-time", "1", *headers, "-d", str(body),
               f"--log-file={log}", url]  # fmt: skip
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    rows = [line.split("\t") for line in log.read_text().splitlines() if line.strip()]
    latency = np.array([int(r[2]) for r in rows]) / 1000.0  # ms
    errors = sum(r[1] != "200" for r in rows)
    rps = float(re.search(r"([\d.]+) req/s", out).group(1))  # type: ignore[union-attr]
    return {"rps": rps, "p50": float(np.percentile(latency, 50)) * 1000,
            "p99": float(np.percentile(latency, 99)) * 1000, "non200": errors, "socket": 0,
            "requests": len(rows)}  # fmt: skip


def command_for(kind: str, bundle: Path, port: int, workers: int, work: Path) -> list[str]:
    if kind == "ceiling":
        return [sys.executable, str(HERE / "serving_load.py"), "--serve-ceiling", str(port)]
    if kind == "naive":
        return [sys.executable, str(HERE / "serving.py"), "--serve", "naive", "--bundle",
                str(bundle), "--port", str(port)]  # fmt: skip
    if kind in PEERS:
        from serving_peers import peer_server

        argv, _ = peer_server(kind, bundle / "model.onnx", port, work)
        return argv
    return [sys.executable, "-m", "deepline", "serve", str(bundle), "--port", str(port),
            "--workers", str(workers), "--grpc-port", str(port + 1)]  # fmt: skip


PEERS = ("litserve", "mlserver", "bentoml")
SERVER_OF = {"ceiling": "ceiling", "v2-json": "deepline", "v2-binary": "deepline",
             "predict": "deepline", "grpc": "deepline", "naive": "naive",
             **{peer: peer for peer in PEERS}}  # fmt: skip


def request_for(contender: str, bundle: Path, name: str) -> Body:
    if contender in PEERS:
        from serving_peers import peer_request

        path, data, headers = peer_request(contender, digit(bundle), name)
        return Body(path, data, headers)
    return bodies(bundle, name)[contender]


def measure(
    bundle: Path, contenders: list[str], levels: list[int], seconds: float, workers: int
) -> list[Point]:
    """Every contender at every concurrency; contenders of one server share its process."""
    name = json.loads((bundle / "bundle.json").read_text()).get("name") or "model"
    points: list[Point] = []
    by_server: dict[str, list[str]] = {}
    for contender in contenders:
        by_server.setdefault(SERVER_OF[contender], []).append(contender)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for kind, served in by_server.items():
            port = free_port_pair()
            env = {}
            if kind in PEERS:
                from serving_peers import peer_server

                env = peer_server(kind, bundle / "model.onnx", port, work)[1]
            with server(command_for(kind, bundle, port, workers, work), port, env):
                if kind in PEERS:
                    from serving_peers import peer_ready_path

                    _wait_ready(port, peer_ready_path(kind, name))
                for contender in served:
                    for c in levels:
                        if contender == "grpc":
                            r = h2load(port + 1, grpc_body(bundle, name), c, seconds, work)
                        else:
                            body = request_for(contender, bundle, name)
                            r = wrk(f"http://{HOST}:{port}", body, c, seconds, work)
                        points.append(Point(contender, c, r["rps"], r["p50"] / 1000,
                                            r["p99"] / 1000, r["non200"] + r["socket"],
                                            r["requests"]))  # fmt: skip
                        print(points[-1], flush=True)
    return points


def _wait_ready(port: int, path: str, timeout: float = 60.0) -> None:
    """Until GET ``path`` answers 200 (a server that takes connections before it can answer)."""
    import http.client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection(HOST, port, timeout=2)
            connection.request("GET", path)
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{path} did not answer 200")


def free_port_pair() -> int:
    """A free port whose next port can be bound too (HTTP and gRPC)."""
    while True:
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind((HOST, port + 1))
            except OSError:
                continue
            return port


def show(points: list[Point], title: str) -> None:
    table = Table(title=title)
    for column in ("server", "concurrency", "req/s", "p50 ms", "p99 ms", "errors"):
        table.add_column(column, justify="left" if column == "server" else "right")
    for p in points:
        table.add_row(p.server, str(p.concurrency), f"{p.rps:,.0f}", f"{p.p50_ms:.2f}",
                      f"{p.p99_ms:.2f}", str(p.errors))  # fmt: skip
    Console().print(table)


def main() -> None:
    global PINNED
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", type=Path, required=False)
    parser.add_argument("--servers", default="ceiling,v2-json,v2-binary,predict,grpc,naive")
    parser.add_argument("--concurrency", default="1,8,32,64")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=1, help="deepline's worker processes")
    parser.add_argument("--unpinned", action="store_true", help="no taskset")
    parser.add_argument("--repeats", type=int, default=1,
                        help="sweeps, the servers' order reversed every other one")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--serve-ceiling", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_ceiling is not None:
        return serve_ceiling(args.serve_ceiling)
    PINNED = not args.unpinned
    levels = [int(c) for c in args.concurrency.split(",")]
    servers = args.servers.split(",")
    sweeps = []
    for repeat in range(args.repeats):
        order = servers if repeat % 2 == 0 else servers[::-1]
        sweeps.append(measure(args.bundle, order, levels, args.seconds, args.workers))
    points = median_points(sweeps)
    where = (f"server on CPU {SERVER_CPU}, load on CPU {LOAD_CPU}" if PINNED
             else "unpinned")  # fmt: skip
    show(points, f"{args.bundle} under wrk/h2load, {where}, {args.workers} worker(s), median of "
                 f"{args.repeats} ({machine()})")  # fmt: skip
    ratios = ceiling_ratios(sweeps)
    if ratios:
        Console().print(f"v2-json / ceiling at each concurrency, per sweep: {ratios}")
    if args.out:
        args.out.write_text(json.dumps({"points": [asdict(p) for p in points],
                                        "sweeps": [[asdict(p) for p in sw] for sw in sweeps],
                                        "ratios": ratios}, indent=1))  # fmt: skip


def median_points(sweeps: list[list[Point]]) -> list[Point]:
    """Per (server, concurrency): the sweep with the median throughput."""
    keyed: dict[tuple[str, int], list[Point]] = {}
    for sweep in sweeps:
        for p in sweep:
            keyed.setdefault((p.server, p.concurrency), []).append(p)
    return [sorted(ps, key=lambda p: p.rps)[len(ps) // 2] for ps in keyed.values()]


def ceiling_ratios(sweeps: list[list[Point]]) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    for sweep in sweeps:
        rps = {(p.server, p.concurrency): p.rps for p in sweep}
        for (server_name, c), value in rps.items():
            if server_name == "v2-json" and ("ceiling", c) in rps:
                out.setdefault(c, []).append(round(value / rps[("ceiling", c)], 3))
    return out


if __name__ == "__main__":
    main()
