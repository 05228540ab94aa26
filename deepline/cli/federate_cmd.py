"""``deepline federate``: the same config trained by Flower clients, simulated or deployed."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from deepline.cli import app, console
from deepline.cli.lifecycle_cmd import SET_HELP, _finish
from deepline.config import load_config
from deepline.runs import check_run_dir


@app.command()
def federate(
    config: str = typer.Argument(None, help="YAML config file with a federated section"),
    simulate: bool = typer.Option(
        True, "--simulate/--no-simulate", help="virtual clients on this machine (the default)"
    ),
    superlink: str = typer.Option(
        None, help="HOST:PORT of a running SuperLink: deploy instead of simulating"
    ),
    root_certificates: Path = typer.Option(
        None, help="the CA certificate (PEM) that the SuperLink's TLS certificate is checked by"
    ),
    insecure: bool = typer.Option(
        False, "--insecure", help="reach the SuperLink unencrypted (a test on one machine)"
    ),
    resume: Path = typer.Option(None, help="continue this run folder from its last round"),
    runs_dir: Path = typer.Option(Path("runs"), help="where new run folders are made"),
    run_dir: Path = typer.Option(None, help="use exactly this run folder"),
    data_dir: str = typer.Option(None, help="look for dataset files here first"),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    cpus: int = typer.Option(None, min=1, help="simulation: clients training at once"),
    verbose: bool = typer.Option(False, "--verbose", help="show Flower's own log"),
) -> None:
    """Train federated on Flower: each client trains on its own partition of the data with
    deepline's trainer, a Flower strategy (federated.strategy) averages them every round, and
    the server keeps a run folder (a checkpoint per round, the report, then evaluate, export
    and serve as usual).

    Simulated by default (federated.clients virtual SuperNodes on Flower's simulation engine).
    With --superlink the run goes to a deployed SuperLink (`flower-superlink`), over TLS
    (--root-certificates) or, for a test on one machine, --insecure. Its SuperNodes each say
    which client they are and where their data is:
    `flower-supernode --superlink HOST:PORT --node-config "partition-id=0 data-dir='/data'"`.
    See docs/federated.md.
    """
    from deepline.federated import federate as run_federated

    if config is None and resume is None and run_dir is None:
        raise typer.BadParameter("give a CONFIG, or --resume RUN_DIR")
    if superlink is None and not simulate:
        raise typer.BadParameter("--no-simulate needs --superlink HOST:PORT")
    overrides = list(set_) + ([f"data.data_dir={data_dir}"] if data_dir else [])
    cfg = load_config(config, overrides) if config is not None else None
    if resume is not None:
        run_dir = check_run_dir(resume)
    if not verbose:  # Flower sets its handler's level itself: filter its records instead
        logging.getLogger("flwr").addFilter(lambda record: record.levelno >= logging.ERROR)
    folder = run_federated(
        cfg,
        runs_dir,
        run_dir,
        superlink=superlink,
        cpus=cpus,
        root_certificates=root_certificates,
        insecure=insecure,
    )
    _finish(folder)
    console.print(f"bundle: {folder / 'bundle'}")
