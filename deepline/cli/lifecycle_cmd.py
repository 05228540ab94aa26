"""``deepline train | evaluate | export | predict | report``: the lifecycle, one command a step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from deepline.cli import app, console
from deepline.config import ExperimentConfig, load_config
from deepline.runs import check_run_dir

SET_HELP = "override a config value, e.g. --set train.lr=3e-4 (repeatable)"


@app.command()
def train(
    config: str = typer.Argument(None, help="YAML config file, or the name of a shipped config"),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    resume: Path = typer.Option(None, help="continue this run folder from its last checkpoint"),
    runs_dir: Path = typer.Option(Path("runs"), help="where new run folders are made"),
    run_dir: Path = typer.Option(
        None, help="use exactly this run folder; continue it if it holds a run already"
    ),
    data_dir: str = typer.Option(None, help="look for dataset files here first"),
    device: str = typer.Option(
        None, help="train.device: auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps"
    ),
    nproc: int | None = typer.Option(
        None,
        min=1,
        help="processes on this machine (runs torchrun); default: one per GPU when there are "
        "several, else one",
    ),
    nnodes: str = typer.Option(None, help="torchrun --nnodes, e.g. 2 or 1:4"),
    node_rank: int = typer.Option(None, help="torchrun --node-rank"),
    rdzv_endpoint: str = typer.Option(None, help="torchrun --rdzv-endpoint HOST:PORT"),
    max_restarts: int = typer.Option(None, min=0, help="torchrun --max-restarts"),
    show_loop: bool = typer.Option(False, "--show-loop", help="print callbacks per event, exit"),
) -> None:
    """Train a model: a new run folder `runs/<config name>/<time>/`, or --resume one.

    With --nproc N the same config trains on N processes (DDP through torchrun; gloo on CPU,
    NCCL on GPU); train.batch_size stays the global batch. A worker that dies is restarted
    from the last complete checkpoint when --max-restarts allows.
    """
    from deepline.training.experiment import prepare_run_dir, run_training

    if config is None and resume is None and run_dir is None:
        raise typer.BadParameter("give a CONFIG, or --resume RUN_DIR")
    overrides = list(set_) + ([f"data.data_dir={data_dir}"] if data_dir else [])
    overrides += [f"train.device={device}"] if device else []
    cfg = load_config(config, overrides) if config is not None else None
    if resume is not None:
        run_dir = check_run_dir(resume)
    if show_loop:
        _show_loop(cfg or load_config(Path(run_dir) / "config.yaml"))
        return
    nproc = nproc or _gpus_to_use(cfg, device)
    if nproc is not None:
        from deepline.training.distributed import check_nproc, launch

        check_nproc(nproc)
        _, folder, _ = prepare_run_dir(cfg, runs_dir, run_dir)
        flags = {
            "--nnodes": nnodes,
            "--node-rank": node_rank,
            "--rdzv-endpoint": rdzv_endpoint,
            "--max-restarts": max_restarts,
        }
        torchrun_args = [f"{k}={v}" for k, v in flags.items() if v is not None]
        code = launch(nproc, ["train", "--run-dir", str(folder)], torchrun_args)
        if code:  # torchrun has printed which worker failed and why
            raise typer.Exit(code)
        return  # rank 0 wrote the report and printed the summary
    exp = run_training(cfg, runs_dir, run_dir)
    from deepline.training.distributed import cleanup, current

    if current().is_main:
        _finish(exp.run_dir, exp.trainer.logs)
    del exp  # its DDP model holds the process group, which cleanup() destroys
    cleanup()


def _gpus_to_use(cfg: ExperimentConfig | None, device: str | None) -> int | None:
    """One process per GPU when this machine has several and the run may use them all (a
    config or --device naming one device keeps one process); None for one process."""
    import os

    import torch

    wanted = device or (cfg.train.device if cfg is not None else "auto")
    if "RANK" in os.environ or wanted not in ("auto", "cuda"):
        return None  # already under torchrun, or one device asked for
    gpus = torch.cuda.device_count()
    return gpus if gpus > 1 else None


def _finish(run_dir: Path, logs: dict[str, float] | None = None) -> None:
    from deepline.report import write_report
    from deepline.runs import read_json

    if logs is None:
        logs = (read_json(run_dir / "status.json", {}) or {}).get("last", {})
    _summary(logs or {}, run_dir, write_report(run_dir))


def _show_loop(cfg: ExperimentConfig) -> None:
    from deepline.training.events import EVENTS, handlers
    from deepline.training.experiment import default_callbacks

    callbacks = default_callbacks(cfg, Path("runs") / cfg.name / "<time>")
    table = Table(title="training loop: callbacks run at each event, in order")
    table.add_column("event")
    table.add_column("callbacks")
    for event in EVENTS:
        names = [h.__self__.name for h in handlers(callbacks, event)]
        table.add_row(event, ", ".join(names) or "-")
    console.print(table)


def _summary(logs: dict[str, float], run_dir: Path, report: Path) -> None:
    table = Table(title=f"run {run_dir}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in sorted(logs.items()):
        table.add_row(key, f"{value:.4f}")
    console.print(table)
    console.print(f"report: {report}\nnext:   deepline evaluate {run_dir}")


@app.command()
def evaluate(
    run_dir: Path = typer.Argument(..., help="a run folder"),
    split: str = typer.Option(None, help="val or test (default: the config's eval.split)"),
    checkpoint: str = typer.Option(None, help="best or last (default: the config's)"),
    data_dir: str = typer.Option(None, help="look for dataset files here first"),
    device: str = typer.Option(
        None, help="where to run the model (default: the run's train.device when present)"
    ),
) -> None:
    """Evaluate a run: eval.json, plots and an updated report.html in the run folder."""
    from deepline.evaluate.evaluate import evaluate_run
    from deepline.report import write_report

    if split not in (None, "val", "test"):
        raise typer.BadParameter(f"split must be val or test, got '{split}'")
    result = evaluate_run(run_dir, split, checkpoint, data_dir, device=device)
    table = Table(
        title=f"{result['split']} split, checkpoint {result['checkpoint']}, "
        f"{result.get('n', '?')} examples"
    )
    baselines: dict[str, dict[str, float]] = result.get("baselines") or {}
    table.add_column("metric")
    table.add_column("model" if baselines else "value", justify="right")
    for name in baselines:  # what the task compares the model with, on the same examples
        table.add_column(name, justify="right")
    for key, value in result["metrics"].items():
        others = [f"{b[key]:.4f}" if key in b else "" for b in baselines.values()]
        table.add_row(key, f"{value:.4f}", *others)
    console.print(table)
    console.print(f"wrote {run_dir / 'eval.json'}, {run_dir / 'plots'}/, {write_report(run_dir)}")


@app.command()
def export(
    path: Path = typer.Argument(..., help="a run folder, or a bundle folder to add formats to"),
    format_: str = typer.Option(
        None,
        "--format",
        help="comma-separated: onnx, torchscript, int8, compact (default: the config's "
        "export.formats)",
    ),
    checkpoint: str = typer.Option(None, help="runs: best or last (default: the config's)"),
    out: Path = typer.Option(None, help="runs: bundle folder (default RUN_DIR/bundle)"),
    data_dir: str = typer.Option(None, help="runs: look for dataset files here first"),
) -> None:
    """Export a model as a bundle, each format checked against eager PyTorch.

    From a run folder: weights, bundle.json, check examples, drift reference and the formats.
    From a bundle folder: adds the formats, checked on the bundle's own examples. int8 of a
    conv net is made from ONNX, so it exports (and checks) model.onnx too.
    """
    from deepline.deploy.export import check_formats, export_bundle, export_run
    from deepline.errors import ExportError
    from deepline.report import write_report
    from deepline.runs import read_json

    formats = None
    if format_ is not None:
        formats = check_formats([f for f in format_.split(",") if f.strip()])
        if not formats:
            from deepline.deploy.formats import format_names

            allowed = ", ".join(format_names())
            raise ExportError(f"--format names no format. Allowed: {allowed}")
    is_bundle = (path / "bundle.json").is_file()
    try:
        if is_bundle:
            report = export_bundle(path, formats)
        else:
            report = export_run(path, checkpoint, data_dir, out, formats)
    except ExportError:
        # a failed check: export.json has the numbers; show them before the error
        written = read_json(path / "export.json")
        if written:
            _export_table(written)
        raise
    _export_table(report)
    console.print(f"bundle: {report['bundle']}")
    if not is_bundle:
        write_report(path)


def _export_table(report: dict[str, Any]) -> None:
    table = Table(title="export: each format checked against eager PyTorch")
    for column in ("format", "file", "size", "check", "ok"):
        table.add_column(column, justify="right" if column == "size" else "left")
    for name, info in report["formats"].items():
        if "metric" in info:  # int8: the task's metric, fp32 -> int8
            check = (
                f"{info['metric']} {info['fp32']:.4f} -> {info['int8']:.4f} "
                f"(max drop {info['max_drop']:g}), {info['size_ratio']:.2f}x size"
            )
        elif "max_abs_diff" in info:
            check = f"max |diff| {info['max_abs_diff']:.2e} (atol {info['atol']:g}"
            check += f", rtol {info['rtol']:g})" if "rtol" in info else ")"
        else:
            check = "-"
        ok = {True: "[green]ok[/]", False: "[red]failed[/]"}.get(info.get("ok"), "-")
        size = f"{info['bytes'] / 1024:.1f} KiB" if "bytes" in info else "-"
        table.add_row(name, info["path"], size, check, ok)
    console.print(table)


@app.command()
def predict(
    bundle: Path = typer.Argument(..., help="a bundle folder (RUN_DIR/bundle)"),
    files: list[Path] = typer.Argument(
        ...,
        help="inputs in files, as the model reads them: images (PNG, JPEG, ..., any size; an "
        "NPY of one image or a batch N, H, W), rows of features (CSV with a header, or JSON)",
    ),
    backend: str = typer.Option("onnx", help="onnx, torch, or a format the bundle holds"),
    top_k: int = typer.Option(3, min=1, help="classifiers: classes to show per input"),
    device: str = typer.Option("cpu", help="torch backend: cpu, cuda, cuda:N, mps or auto"),
    out: Path = typer.Option(
        None,
        help="segmentation and detection: write each image with its answer drawn over "
        "it (masks, boxes) here, as <input name>.png",
    ),
) -> None:
    """Answer the inputs in files with an exported bundle: one table row per input. Masks
    and boxes are in each image's own pixels."""
    from deepline.deploy.predictor import Predictor

    predictor = Predictor(bundle, backend, device=device)
    answers = predictor.predict_files(list(files), top_k)
    rows = [(name, predictor.task.answer_cells(answer)) for name, answer in answers]
    if out is not None:
        stems: dict[str, int] = {}
        for name, answer in answers:
            if not Path(name).is_file():  # one image of an .npy batch: no picture to draw on
                continue
            stem = Path(name).stem
            stems[stem] = stems.get(stem, 0) + 1  # a.jpg from two folders: a.png, a-2.png
            target = out / (f"{stem}.png" if stems[stem] == 1 else f"{stem}-{stems[stem]}.png")
            drawn = predictor.task.draw_answer(Path(name), answer, target)
            if drawn is not None:
                console.print(f"drew {drawn}")
    table = Table(title=f"{bundle} ({backend})")
    table.add_column("input", overflow="fold")
    for i in range(max((len(cells) for _, cells in rows), default=0)):
        table.add_column(f"#{i + 1}")
    for name, cells in rows:
        table.add_row(name, *cells)
    console.print(table)


@app.command()
def report(run_dir: Path = typer.Argument(..., help="a run folder")) -> None:
    """(Re)write RUN_DIR/report.html from what the run folder holds."""
    from deepline.report import write_report

    console.print(f"wrote {write_report(check_run_dir(run_dir))}")


@app.command()
def generate(
    bundle: Path = typer.Argument(..., help="a language model's or image generator's bundle"),
    prompt: str = typer.Option("\n", help="text to continue"),
    tokens: int = typer.Option(300, min=1, help="how many tokens to sample"),
    temperature: float = typer.Option(0.8, min=0.01, help="lower = more conservative"),
    top_k: int = typer.Option(None, min=1, help="sample among the k most likely tokens"),
    top_p: float = typer.Option(None, min=0.0, max=1.0, help="nucleus sampling mass"),
    seed: int = typer.Option(0, help="the same seed gives the same text or image"),
    backend: str = typer.Option("onnx", help="onnx, torch, torchscript or int8"),
    class_: str = typer.Option(
        None, "--class", help="images: the class to draw (name or index), conditional GANs"
    ),
    count: int = typer.Option(
        1, min=1, max=1024, help="images: how many (seeds seed, seed+1, ...)"
    ),
    out: Path = typer.Option(Path("generated"), help="images: the folder the PNGs go to"),
) -> None:
    """Generate text with a language model, streaming it to the terminal, or images with an
    image generator, written as PNGs (the same seed and class give the same image as the
    server).

    Characters a character-level vocabulary does not know are an error; a prompt longer than
    the model's context is cut to its last tokens, with a warning.
    """
    import sys

    from deepline.deploy.predictor import Predictor

    generator = Predictor(bundle, backend)
    if generator.task.generates_images:
        _write_images(generator, seed, class_, count, out)
        return
    sys.stdout.write(prompt)
    for piece in generator.stream(prompt, tokens, temperature, top_k, top_p, seed):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")


def _write_images(generator: Any, seed: int, class_: str | None, count: int, out: Path) -> None:
    """Images of seeds ``seed``.. (and a class) as PNGs in ``out``, listed in a table."""
    import base64

    from deepline.errors import InputError

    given = {} if class_ is None else {"class": class_}
    inputs = [{"seed": seed + i, **given} for i in range(count)]
    try:
        answers = generator.predict(inputs)
    except InputError as err:
        raise typer.BadParameter(str(err), param_hint="--class / --seed") from None
    out.mkdir(parents=True, exist_ok=True)
    table = Table("seed", "class", "file")
    for item, answer in zip(inputs, answers):
        label = f"_class{class_}" if class_ is not None else ""
        path = out / f"seed{item['seed']}{label}.png"
        path.write_bytes(base64.b64decode(answer["png"]))
        table.add_row(str(item["seed"]), str(class_ or "-"), str(path))
    console.print(table)


@app.command()
def recommend(
    bundle: Path = typer.Argument(..., help="a recommender's bundle (RUN_DIR/bundle)"),
    user: str = typer.Option(None, help="a user id of the training log: their whole history"),
    history: str = typer.Option(
        None, help="item ids the user interacted with, oldest first, comma-separated: 50,172,133"
    ),
    k: int = typer.Option(10, help="how many items to recommend"),
    include_seen: bool = typer.Option(False, help="also recommend items of the history"),
    backend: str = typer.Option("onnx", help="onnx, torch, or a format the bundle holds"),
) -> None:
    """Recommend items to a known user, or for a history of item ids (or both: the user's own
    factors with that history).

    Items of the history are left out unless --include-seen. An unknown user, or an empty
    history, gets the most popular items, and the answer says so.
    """
    from deepline.deploy.predictor import Predictor

    if k < 1:
        raise typer.BadParameter(f"must be at least 1, got {k}", param_hint="--k")
    items = None if history is None else [i.strip() for i in history.split(",") if i.strip()]
    answer = Predictor(bundle, backend).recommend(user, items, k, include_seen)
    shown = answer["history"][-10:]
    if shown:
        more = len(answer["history"]) - len(shown)
        console.print(f"history ({len(answer['history'])} items, latest last"
                      f"{f'; {more} earlier not shown' if more else ''}):")  # fmt: skip
        for entry in shown:
            console.print(f"  {entry['item']:>8}  {entry['title']}", highlight=False)
    if answer["fallback"]:
        who = f"user '{user}' is not in the training log" if user else "the history is empty"
        console.print(f"[yellow]{who}: the most popular items instead[/yellow]")
    table = Table(title=f"{bundle} ({backend}): top {k}")
    for column in ("#", "item", "title", "score"):
        table.add_column(column, justify="right" if column in ("#", "score") else "left")
    for rank, entry in enumerate(answer["items"], 1):
        table.add_row(str(rank), entry["item"], entry["title"], f"{entry['score']:.3f}")
    console.print(table)
