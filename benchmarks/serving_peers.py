"""Peer model servers (LitServe, MLServer, BentoML) serving one ONNX model, each from its own venv.

Every peer runs the same ONNX model with ONNX Runtime on the CPU (``CPUExecutionProvider``,
``intra_op_num_threads=1``, ``inter_op_num_threads=1``, sequential execution) in ONE
inference worker, without dynamic batching (none of the three batches by default), with
per-request access logs off (as ``deepline serve`` has them) and log level ``warning``:

- ``litserve``: ``LitServer(accelerator="cpu", devices=1, workers_per_device=1)``, a
  ``LitAPI`` with ``max_batch_size=1``, ``POST /predict`` ``{"inputs": nested list}`` answered
  with the logits as a nested JSON list. LitServe's design puts the HTTP server (one Uvicorn
  process, ``num_api_servers=1``) and the inference worker in separate processes, joined by
  multiprocessing-manager queues (a third process): every request crosses processes.
- ``mlserver``: ``mlserver start`` on a folder written under ``work`` (``settings.json`` with
  ``parallel_workers: 0``, so inference runs in the server's own process and event loop;
  ``model-settings.json`` with ``max_batch_size: 0``, adaptive batching off), a custom runtime
  (an ``MLModel`` subclass, below) answering KServe V2 JSON at ``/v2/models/NAME/infer``.
  Its gRPC server (always on) listens on ``port + 1`` (or a free port when that one cannot
  be bound), its Prometheus metrics server (on by default) on a free port.
- ``bentoml``: ``bentoml serve`` of a ``@bentoml.service(workers=1, threads=1)`` class whose
  ``@bentoml.api`` method ``predict(inputs: np.ndarray) -> np.ndarray`` takes the JSON body
  ``{"inputs": nested list}`` at ``POST /predict`` (a sync method: BentoML runs it on its one
  thread). BentoML's process that ``bentoml serve`` starts is a supervisor (circus arbiter)
  that owns the socket; the HTTP server and inference live in one worker process it spawns.

The peers' own code (the ``LitAPI``, the ``MLModel``, the BentoML service) is in this file:
module-level imports are the standard library and numpy only, and each class is built on
first access (module ``__getattr__``) inside the peer's venv. A copy of this file goes to
``work/serving_peers_code/`` so that no peer imports the rest of ``benchmarks/``.

Readiness: LitServe and MLServer open their port once the model is loaded; BentoML's arbiter
binds the port at once and its worker accepts a second or so later (connections wait in the
backlog meanwhile). ``peer_ready_path`` gives a GET path that answers 200 only when ready.
MLServer serves the model under ``model_name_of(onnx_path)`` (``bundle.json``'s ``name``
beside the ONNX file, else ``"model"``): pass the same name to ``peer_request``.

Stopping: each server runs in the foreground and stops on SIGTERM (LitServe's launcher turns
SIGTERM into its Ctrl+C shutdown). Children that a peer spawns are set to be killed when their
parent dies (``PR_SET_PDEATHSIG``), so even a SIGKILL of the started process frees the port.

Self-check: ``python benchmarks/serving_peers.py --onnx PATH [--peers litserve,mlserver]``.
"""

import argparse
import contextlib
import ctypes
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HOST = "127.0.0.1"
PEERS = ("litserve", "mlserver", "bentoml")
ENVS_ROOT = Path("/work/bench_envs")
VENVS = {peer: ENVS_ROOT / peer for peer in PEERS}
CODE_DIR = "serving_peers_code"  # under ``work``: a copy of this file, alone
JSON_HEADERS = {"Content-Type": "application/json"}


# -- shared by the peers' code (runs inside each peer's venv) ----------------------------------


def ort_session(onnx_path: str | Path) -> Any:
    """An ONNX Runtime CPU session on one thread (intra-op 1, inter-op 1, sequential)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Have the kernel send ``sig`` to this process when its parent dies (Linux prctl), and
    exit now if the parent is already gone."""
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(sig), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os._exit(1)


def _run_model(session: Any, x: np.ndarray) -> np.ndarray:
    name = session.get_inputs()[0].name
    return session.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]


def _build_litserve_api() -> type:
    import litserve as ls

    class LitServeOnnx(ls.LitAPI):
        """LitServe API: ``{"inputs": nested list}`` in, the logits (nested list) out.

        ``decode_request`` and ``encode_response`` stay unannotated on purpose: LitServe reads
        their annotations as the endpoint's body and response types (none: raw JSON)."""

        def __init__(self, onnx_path: str) -> None:
            super().__init__(max_batch_size=1, api_path="/predict")
            self.onnx_path = onnx_path

        def setup(self, device):
            die_with_parent()
            self.session = ort_session(self.onnx_path)

        def decode_request(self, request):
            return np.asarray(request["inputs"], dtype=np.float32)

        def predict(self, x):
            return _run_model(self.session, x)

        def encode_response(self, output):
            return output.tolist()

    LitServeOnnx.__qualname__ = "LitServeOnnx"  # pickled by name into the spawned worker
    return LitServeOnnx


def _build_mlserver_model() -> type:
    from mlserver import MLModel
    from mlserver.codecs import NumpyCodec
    from mlserver.types import InferenceRequest, InferenceResponse
    from mlserver.utils import get_model_uri

    class MLServerOnnx(MLModel):
        """MLServer custom runtime: KServe V2 in, the ONNX model's first output as V2 out."""

        async def load(self) -> bool:
            self.session = ort_session(await get_model_uri(self.settings))
            self.output_name = self.session.get_outputs()[0].name
            return True

        async def predict(self, payload: InferenceRequest) -> InferenceResponse:
            x = NumpyCodec.decode_input(payload.inputs[0])
            y = _run_model(self.session, x)
            return InferenceResponse(
                model_name=self.name,
                model_version=self.version,
                outputs=[NumpyCodec.encode_output(name=self.output_name, payload=y)],
            )

    MLServerOnnx.__qualname__ = "MLServerOnnx"
    return MLServerOnnx


def _build_bentoml_service() -> Any:
    import bentoml

    @bentoml.service(name="onnx_peer", workers=1, threads=1, logging={"access": {"enabled": False}})
    class BentoOnnx:
        """BentoML service: ``{"inputs": nested list}`` in, the logits (nested list) out."""

        def __init__(self) -> None:
            die_with_parent()
            self.session = ort_session(bentoml.use_arguments().onnx)

        @bentoml.api
        def predict(self, inputs: np.ndarray) -> np.ndarray:
            """The model's logits for ``inputs`` (N, ...) float32."""
            return _run_model(self.session, inputs)

    return BentoOnnx


_BUILDERS = {
    "LitServeOnnx": _build_litserve_api,
    "MLServerOnnx": _build_mlserver_model,
    "BentoOnnx": _build_bentoml_service,
}


def __getattr__(name: str) -> Any:
    """Builds a peer's class on first access (its package imported only then), and keeps it."""
    if name not in _BUILDERS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = _BUILDERS[name]()
    globals()[name] = value
    return value


def _serve_litserve(onnx_path: str, port: int) -> None:
    """LitServe in the foreground; SIGTERM runs its Ctrl+C shutdown; children die with it."""
    import litserve as ls
    import serving_peers  # the class must pickle by this module's name (spawned worker)

    def in_forked_child() -> None:  # the Uvicorn process and the multiprocessing manager
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        die_with_parent()

    os.register_at_fork(after_in_child=in_forked_child)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    api = serving_peers.LitServeOnnx(onnx_path)
    server = ls.LitServer(api, accelerator="cpu", devices=1, workers_per_device=1)
    try:
        server.run(
            host=HOST,
            port=port,
            num_api_servers=1,
            log_level="warning",
            generate_client_file=False,
            access_log=False,
        )
    except KeyboardInterrupt:
        pass
    finally:
        import multiprocessing

        for child in multiprocessing.active_children():
            child.kill()


# -- what the benchmark driver calls -------------------------------------------------------------


def venv_python(peer: str) -> Path:
    """The peer's venv interpreter."""
    return VENVS[peer] / "bin" / "python"


def model_name_of(onnx_path: Path) -> str:
    """The model's name as the driver computes it: ``bundle.json``'s ``name`` beside the ONNX
    file, else ``"model"``."""
    meta = Path(onnx_path).parent / "bundle.json"
    if meta.is_file():
        return json.loads(meta.read_text()).get("name") or "model"
    return "model"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _bindable(port: int) -> bool:
    """Whether ``port`` can be bound now without ``SO_REUSEADDR`` (as gRPC needs: a port held
    in TIME_WAIT by an earlier client connection refuses connections yet cannot be bound)."""
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _code_dir(work: Path) -> Path:
    """``work/serving_peers_code/`` holding a copy of this file (and nothing else)."""
    code = Path(work) / CODE_DIR
    code.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(__file__).resolve(), code / "serving_peers.py")
    return code


def peer_server(
    peer: str, onnx_path: Path, port: int, work: Path
) -> tuple[list[str], dict[str, str]]:
    """(argv, extra environment) that run ``peer`` in the foreground on 127.0.0.1:``port``
    serving ``onnx_path`` (see the module docstring for each peer's setup). Files it needs
    go under ``work`` (a folder per peer and port); calling it again rewrites them.
    MLServer also takes ``port + 1`` for gRPC (another free port if that one cannot be bound)
    and a free port for its metrics."""
    onnx_path, work = Path(onnx_path).resolve(), Path(work).resolve()
    code = _code_dir(work)
    env = {"PYTHONUNBUFFERED": "1", "PYTHONPATH": str(code)}
    if peer == "litserve":
        argv = [
            str(venv_python(peer)),
            str(code / "serving_peers.py"),
            "--run",
            "litserve",
            "--onnx",
            str(onnx_path),
            "--port",
            str(port),
        ]
        return argv, env
    if peer == "mlserver":
        folder = work / f"mlserver-{port}"
        folder.mkdir(parents=True, exist_ok=True)
        settings = {
            "debug": False,  # no access log
            "parallel_workers": 0,  # inference in this process
            "cache_enabled": False,  # (the default) every request runs the model
            "host": HOST,
            "http_port": port,
            "grpc_port": port + 1 if _bindable(port + 1) else _free_port(),
            "metrics_port": _free_port(),
            "metrics_dir": str(folder / ".metrics"),
            "environments_dir": str(folder / ".envs"),
        }
        model = {
            "name": model_name_of(onnx_path),
            "implementation": "serving_peers.MLServerOnnx",
            "max_batch_size": 0,
            "max_batch_time": 0.0,
            "parameters": {"uri": str(onnx_path)},
        }
        (folder / "settings.json").write_text(json.dumps(settings, indent=2))
        (folder / "model-settings.json").write_text(json.dumps(model, indent=2))
        return [str(VENVS[peer] / "bin" / "mlserver"), "start", str(folder)], env
    if peer == "bentoml":
        home = work / "bentoml-home"
        home.mkdir(parents=True, exist_ok=True)
        env.update({"BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"})
        argv = [
            str(VENVS[peer] / "bin" / "bentoml"),
            "serve",
            "serving_peers:BentoOnnx",
            "--working-dir",
            str(code),
            "--host",
            HOST,
            "--port",
            str(port),
            "--arg",
            f"onnx={onnx_path}",
        ]
        return argv, env
    raise ValueError(f"unknown peer {peer!r}: one of {PEERS}")


def peer_request(peer: str, x: np.ndarray, model_name: str) -> tuple[str, bytes, dict[str, str]]:
    """(URL path, body, headers) of one inference request carrying the float32 input ``x``."""
    x = np.asarray(x, dtype=np.float32)
    if peer == "mlserver":
        tensor = {
            "name": "input",
            "shape": list(x.shape),
            "datatype": "FP32",
            "data": x.reshape(-1).tolist(),
        }
        body = json.dumps({"inputs": [tensor]}).encode()
        return f"/v2/models/{model_name}/infer", body, dict(JSON_HEADERS)
    if peer in ("litserve", "bentoml"):
        return "/predict", json.dumps({"inputs": x.tolist()}).encode(), dict(JSON_HEADERS)
    raise ValueError(f"unknown peer {peer!r}: one of {PEERS}")


def peer_ready_path(peer: str, model_name: str) -> str:
    """A GET path that answers 200 once the peer can serve the model."""
    return {
        "litserve": "/health",
        "mlserver": f"/v2/models/{model_name}/ready",
        "bentoml": "/readyz",
    }[peer]


def peer_logits(peer: str, body: bytes) -> np.ndarray:
    """The logits in a peer's answer."""
    answer = json.loads(body)
    if peer == "mlserver":
        out = answer["outputs"][0]
        return np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])
    return np.asarray(answer, dtype=np.float32)


def peer_version(peer: str) -> str:
    """The peer package's version in its venv (or why it is unknown)."""
    code = f"import importlib.metadata as m; print(m.version({peer!r}))"
    try:
        out = subprocess.run(
            [str(venv_python(peer)), "-c", code], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"? ({exc})"
    return out.stdout.strip() if out.returncode == 0 else "? (not installed)"


# -- the self-check ------------------------------------------------------------------------------


def _http(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((HOST, port)) == 0


def _wait_ready(peer: str, port: int, name: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready")
        if _port_open(port):
            try:
                status, _ = _http(port, "GET", peer_ready_path(peer, name), timeout=5)
            except OSError:
                status = 0
            if status == 200:
                return
        time.sleep(0.25)
    raise TimeoutError(f"not ready after {timeout:.0f} s")


def _reference(onnx_path: Path, x: np.ndarray) -> np.ndarray:
    """ONNX Runtime's own output for ``x``: here if onnxruntime imports, else in a peer venv."""
    try:
        return _run_model(ort_session(onnx_path), x)
    except ImportError:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "x.npy", Path(tmp) / "y.npy"
        np.save(src, x)
        for peer in PEERS:
            if venv_python(peer).exists():
                subprocess.run(
                    [
                        str(venv_python(peer)),
                        str(Path(__file__).resolve()),
                        "--reference",
                        str(src),
                        str(dst),
                        "--onnx",
                        str(onnx_path),
                    ],
                    check=True,
                )
                return np.load(dst)
    raise RuntimeError("no onnxruntime here nor in any peer venv")


def _input_for(onnx_path: Path) -> np.ndarray:
    """One random input in [0, 1), batch 1, shaped like the model's input (read from the
    ONNX file by a peer venv's onnxruntime when this interpreter has none)."""
    try:
        shape = ort_session(onnx_path).get_inputs()[0].shape
    except ImportError:
        code = (
            "import sys, onnxruntime as o; print(list(o.InferenceSession(sys.argv[1], "
            "providers=['CPUExecutionProvider']).get_inputs()[0].shape))"
        )
        python = next(str(venv_python(p)) for p in PEERS if venv_python(p).exists())
        out = subprocess.run(
            [python, "-c", code, str(onnx_path)], capture_output=True, text=True, check=True
        )
        shape = json.loads(out.stdout.replace("'", '"'))
    dims = [d if isinstance(d, int) and d > 0 else 1 for d in shape]
    return np.random.default_rng(0).random(dims).astype(np.float32)


def _stop(proc: subprocess.Popen, sig: int, grace: float = 10.0) -> str:
    """Signal the server (as the driver does), SIGKILL its group after ``grace`` seconds."""
    t0 = time.monotonic()
    proc.send_signal(sig)
    try:
        proc.wait(grace)
        how = f"exit {proc.returncode} in {time.monotonic() - t0:.1f}s"
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        how = f"SIGKILL after {grace:.0f}s"
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # anything left in its group
    return how


def check_peer(
    peer: str,
    onnx_path: Path,
    x: np.ndarray,
    expected: np.ndarray,
    work: Path,
    requests: int = 20,
    stop_signal: int = signal.SIGTERM,
) -> dict[str, Any]:
    """Start ``peer`` pinned to CPU 0, send ``requests`` requests, compare the logits with
    ``expected``, stop it with ``stop_signal`` and see the port freed."""
    row: dict[str, Any] = {"peer": peer, "version": peer_version(peer), "ok": False}
    if not venv_python(peer).exists():
        row["detail"] = f"no venv at {VENVS[peer]}"
        return row
    port = _free_port()
    name = model_name_of(onnx_path)
    argv, env = peer_server(peer, onnx_path, port, work)
    log = work / f"{peer}.log"
    path, body, headers = peer_request(peer, x, name)
    t0 = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["taskset", "-c", "0", *argv],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        _wait_ready(peer, port, name, proc, timeout=180)
        row["start_s"] = round(time.monotonic() - t0, 1)
        worst, statuses = 0.0, []
        for _ in range(requests):
            status, answer = _http(port, "POST", path, body, headers)
            statuses.append(status)
            if status == 200:
                got = peer_logits(peer, answer)
                worst = max(worst, float(np.max(np.abs(got.reshape(expected.shape) - expected))))
            else:
                row.setdefault("first_error", answer[:300].decode(errors="replace"))
        n_ok = sum(s == 200 for s in statuses)
        row["ok"] = n_ok == requests and worst <= 1e-4
        row["detail"] = f"{n_ok}/{requests} x 200, max |diff| {worst:.1e}"
        if "first_error" in row:
            row["detail"] += f"; {row['first_error']}"
    except Exception as exc:  # reported in the table
        row["detail"] = f"{type(exc).__name__}: {exc}"
    finally:
        row["stop"] = _stop(proc, stop_signal)
        time.sleep(1.0)
        if _port_open(port):
            row["ok"] = False
            row["stop"] += "; PORT STILL OPEN"
    if not row["ok"]:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        row["log_tail"] = "\n".join(tail)
    return row


def main() -> None:
    """Self-check (default), or run a peer's server (``--run``, inside the peer's venv)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path, required=True)
    parser.add_argument("--peers", default=",".join(PEERS))
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument(
        "--sigkill", action="store_true", help="stop each server with SIGKILL instead of SIGTERM"
    )
    parser.add_argument("--run", choices=["litserve"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--reference", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run == "litserve":
        _serve_litserve(str(args.onnx), args.port)
        return
    if args.reference:
        src, dst = args.reference
        np.save(dst, _run_model(ort_session(args.onnx), np.load(src)))
        return
    onnx_path = args.onnx.resolve()
    x = _input_for(onnx_path)
    expected = _reference(onnx_path, x)
    rows = []
    stop_signal = signal.SIGKILL if args.sigkill else signal.SIGTERM
    with tempfile.TemporaryDirectory(prefix="serving_peers-") as tmp:
        for peer in [p for p in args.peers.split(",") if p]:
            row = check_peer(peer, onnx_path, x, expected, Path(tmp), args.requests, stop_signal)
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "log_tail"}), flush=True)
    print(f"\n{'peer':<10} {'version':<10} {'result':<6} {'start':>6}  detail / stop")
    for row in rows:
        start = f"{row['start_s']}s" if "start_s" in row else "-"
        result = "ok" if row["ok"] else "FAIL"
        print(
            f"{row['peer']:<10} {row['version']:<10} {result:<6} {start:>6}  "
            f"{row.get('detail', '')} / {row.get('stop', '')}"
        )
        if not row["ok"] and row.get("log_tail"):
            print("    " + row["log_tail"].replace("\n", "\n    "))
    sys.exit(0 if all(r["ok"] for r in rows) else 1)


if __name__ == "__main__":
    main()
