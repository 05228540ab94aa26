"""``deepline serve | repo add | monitor``: serve bundles over HTTP and watch them."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from deepline.cli import app, console
from deepline.errors import DeeplineError

repo_app = typer.Typer(help="Manage a model repository (NAME/VERSION/ bundle folders).")
app.add_typer(repo_app, name="repo")

TOKEN_VARIABLE = "DEEPLINE_SERVE_TOKEN"


@app.command()
def serve(
    path: Path = typer.Argument(
        ..., help="a bundle folder, or a repository folder laid out as NAME/VERSION/"
    ),
    host: str = typer.Option("127.0.0.1", help="address to bind; other machines need 0.0.0.0"),
    port: int = typer.Option(8000, min=0, max=65535),
    grpc_port: int = typer.Option(
        None, min=0, max=65535, help="also serve KServe V2 over gRPC on this port (e.g. 8081)"
    ),
    token: str = typer.Option(
        None,
        envvar=TOKEN_VARIABLE,
        help=f"require 'Authorization: Bearer TOKEN' (or ${TOKEN_VARIABLE})",
    ),
    backend: str = typer.Option("onnx", help="onnx, torch, torchscript or int8"),
    max_batch_size: int = typer.Option(64, min=1, help="rows per model call; 1 turns batching off"),
    max_delay_ms: float = typer.Option(2.0, min=0.0, help="how long a batch waits for more"),
    max_body_mb: float = typer.Option(16.0, min=0.001, help="request body cap (413 above)"),
    timeout: float = typer.Option(30.0, min=0.01, help="seconds a request may take"),
    threads: int = typer.Option(
        None, min=1, help="threads inside each model call (default: the runtime's choice)"
    ),
    drift_window: int = typer.Option(1000, min=10, help="live examples the drift score covers"),
    cors: list[str] = typer.Option(None, help="allow these browser origins (default: none)"),
    workers: int = typer.Option(
        1,
        min=1,
        max=256,
        help="server processes behind the port, each with its own batcher "
        "(a dead one is replaced); about one per core",
    ),
    ray: bool = typer.Option(False, "--ray", help="serve as a Ray Serve deployment instead"),
    replicas: int = typer.Option(1, min=1, help="--ray: replicas (fixed)"),
    min_replicas: int = typer.Option(None, min=1, help="--ray: autoscaling lower bound"),
    max_replicas: int = typer.Option(None, min=1, help="--ray: autoscaling upper bound"),
    ray_address: str = typer.Option(
        None, help="--ray: join this Ray cluster (e.g. ray://HEAD:10001); default: a local one"
    ),
) -> None:
    """Serve models over HTTP: deepline's own API, TensorFlow Serving REST and KServe V2; and
    KServe V2 over gRPC too with --grpc-port (tritonclient.grpc and KServe clients).

    --workers N runs N processes behind the port; --ray runs the same app as a Ray Serve
    deployment (--replicas, or --min-replicas/--max-replicas for Ray's autoscaler), on a
    local Ray or the cluster at --ray-address.

    Open http://HOST:PORT/ to try the models in a browser; /docs lists every route;
    /metrics is for Prometheus; `deepline monitor URL` watches drift.
    """
    from deepline.serve.app import create_app
    from deepline.serve.server import check_port_free, exposure_warning
    from deepline.serve.server import serve as run_server
    from deepline.serve.settings import ServeSettings

    check_port_free(host, port)
    if grpc_port is not None:
        check_port_free(host, grpc_port)
    if ray and (workers > 1 or grpc_port is not None):
        message = "--ray runs Ray Serve's replicas and proxy: not with --workers or --grpc-port"
        raise typer.BadParameter(message, param_hint="--ray")

    settings = ServeSettings(
        host=host,
        port=port,
        grpc_port=grpc_port,
        token=token or None,
        max_body_bytes=int(max_body_mb * 1024 * 1024),
        timeout_s=timeout,
        backend=backend,
        max_batch_size=max_batch_size,
        max_delay_ms=max_delay_ms,
        threads=threads,
        drift_window=drift_window,
        cors_origins=tuple(cors or ()),
    )
    where = f" from {workers} processes" if workers > 1 else " on Ray Serve" if ray else ""
    table = Table(title=f"serving {path}{where}")
    for column in ("model", "version", "task", "backend"):
        table.add_column(column)
    application = None
    if workers == 1 and not ray:  # loaded here; workers and replicas load their own
        application = create_app(path, settings)
        models = [(m.name, m.version, m.metadata()["task"]) for m in application.state.plane.models]
    else:
        from deepline.serve.repository import scan

        models = [(e.name, e.version, e.bundle().spec["task"]["name"]) for e in scan(path)]
    for name, version, task in models:
        table.add_row(name, str(version), task, backend)
    console.print(table)
    warning = exposure_warning(settings)
    if warning:
        console.print(f"[bold yellow]warning:[/] {warning}")
    page = f"http://{host}:{port}/" + ("?token=TOKEN" if token else "")
    console.print(
        f"listening on http://{host}:{port}  page {page}  API docs /docs  metrics /metrics"
        + (f"  gRPC {host}:{grpc_port}" if grpc_port is not None else "")
        + ("  (bearer token required)" if token else "")
        + "  Ctrl+C stops"
    )
    if ray:
        from deepline.serve.ray_serve import serve_on_ray

        serve_on_ray(path, settings, replicas, min_replicas, max_replicas, ray_address)
    elif application is None:
        from deepline.serve.workers import serve_workers

        serve_workers(path, settings, workers)
    else:
        run_server(application, settings)


@repo_app.command("add")
def repo_add(
    bundle: Path = typer.Argument(..., help="a bundle folder (RUN_DIR/bundle)"),
    name: str = typer.Option(..., help="the model's name in the repository"),
    repository: Path = typer.Option(Path("models"), "--repo", help="the repository folder"),
    max_batch_size: int = typer.Option(
        None, min=1, help="this model's rows per call (REPO/NAME/batching.yaml)"
    ),
    max_delay_ms: float = typer.Option(None, min=0.0, help="this model's batching delay"),
) -> None:
    """Copy a bundle into `REPO/NAME/<next version>/` (the latest version is served by default)."""
    from deepline.serve.repository import Batching, add_bundle

    batching = Batching(max_batch_size=max_batch_size, max_delay_ms=max_delay_ms)
    entry = add_bundle(bundle, repository, name, batching)
    console.print(f"added {bundle} as {entry.name} version {entry.version}: {entry.path}")
    own = entry.batching.model_dump(exclude_none=True)
    if own:
        console.print(f"batching for {entry.name}: {own}")


@repo_app.command("list")
def repo_list(
    repository: Path = typer.Option(Path("models"), "--repo", help="the repository folder"),
) -> None:
    """The models and versions in a repository."""
    from deepline.serve.repository import scan

    table = Table(title=str(repository))
    for column in ("model", "version", "task", "created"):
        table.add_column(column)
    for entry in scan(repository):
        spec = entry.bundle().spec
        table.add_row(entry.name, str(entry.version), spec["task"]["name"], spec.get("created_at"))
    console.print(table)


@app.command()
def monitor(
    url: str = typer.Argument(..., help="the server, e.g. http://127.0.0.1:8000"),
    every: float = typer.Option(2.0, min=0.1, help="seconds between refreshes"),
    once: bool = typer.Option(False, help="print one table and exit"),
    token: str = typer.Option(None, envvar=TOKEN_VARIABLE, help="the server's bearer token"),
) -> None:
    """Watch a server live: requests, latency and drift (PSI) per model."""
    from rich.live import Live

    from deepline.serve.watch import fetch_status, status_table

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if once:
        console.print(status_table(url, fetch_status(url, headers)))
        return
    with Live(console=console, auto_refresh=False) as live:
        try:
            while True:
                try:
                    live.update(status_table(url, fetch_status(url, headers)), refresh=True)
                except DeeplineError as err:
                    live.update(f"[red]{err}[/] (retrying)", refresh=True)
                time.sleep(every)
        except KeyboardInterrupt:
            pass
