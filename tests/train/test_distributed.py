"""Real torchrun on the gloo backend: 2 processes agree with 1, survive a killed worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from deepline.config import load_config
from deepline.errors import ConfigError, DeeplineError
from deepline.training.checkpoint import list_checkpoints
from deepline.training.distributed import check_nproc
from deepline.training.experiment import per_process_batch
from tests.conftest import tiny_config

pytestmark = pytest.mark.multiproc


def ddp_config(tmp_path: Path, **train) -> Path:  # type: ignore[no-untyped-def]
    raw = tiny_config(log_every_steps=1, **train)
    # no batch norm (its statistics are per process), no dropout, no augmentation: with these
    # the global batch's gradient is the same whether one process or two compute it
    raw["model"].update(batch_norm=False, dropout=0.0)
    raw["data"]["augment"] = {"shift": 0}
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def deepline(*args: str, **kwargs) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    return subprocess.run(
        [sys.executable, "-m", "deepline", *args], capture_output=True, text=True, **kwargs
    )


def step_losses(run_dir: Path) -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x)["train/loss"] for x in lines if "train/loss" in x]


def test_two_processes_match_one(tmp_path: Path) -> None:
    config = ddp_config(tmp_path, epochs=None, max_steps=12, checkpoint={"every_steps": 6})
    one = deepline("train", str(config), "--run-dir", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr
    two = deepline("train", str(config), "--nproc", "2", "--run-dir", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr + two.stdout
    a, b = step_losses(tmp_path / "one"), step_losses(tmp_path / "two")
    assert len(a) == len(b) == 12
    # float32 sums in a different order (two half-batch means, then gradient averaging)
    # differ in the last bits; over 12 steps the losses agree to well within 1e-5
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-5, (a, b)
    status = json.loads((tmp_path / "two" / "status.json").read_text())
    assert status["status"] == "completed"
    assert (tmp_path / "two" / "report.html").is_file()

    # a checkpoint written by 2 processes resumes on 1: extend the step budget and continue
    run = tmp_path / "two"
    text = (run / "config.yaml").read_text().replace("max_steps: 12", "max_steps: 18")
    (run / "config.yaml").write_text(text)
    more = deepline("train", "--resume", str(run))
    assert more.returncode == 0, more.stderr
    assert "resumed from" in more.stderr and "random streams restart" in more.stderr
    assert list_checkpoints(run / "checkpoints")[-1].name == "step-00000018"


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def test_killed_worker_restarts_from_checkpoint(tmp_path: Path) -> None:
    config = ddp_config(
        tmp_path,
        epochs=None,
        max_steps=300,
        batch_size=32,
        checkpoint={"every_steps": 20, "keep_last": 3},
    )
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "deepline",
            "train",
            str(config),
            "--nproc",
            "2",
            "--max-restarts",
            "1",
            "--run-dir",
            str(run),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    killed = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and killed is None:
        done = list_checkpoints(run / "checkpoints")
        if done and int(done[-1].name.split("-")[1]) >= 60:
            torchrun = children(proc.pid)
            workers = [w for t in torchrun for w in children(t)]
            if len(workers) == 2:
                os.kill(workers[1], signal.SIGKILL)
                killed = int(done[-1].name.split("-")[1])
        time.sleep(0.02)
    output, _ = proc.communicate(timeout=300)
    assert killed is not None, "training ended before a worker could be killed:\n" + output
    assert proc.returncode == 0, output
    assert "resumed from" in output  # the restarted workers continued from a checkpoint
    assert list_checkpoints(run / "checkpoints")[-1].name == "step-00000300"
    assert json.loads((run / "status.json").read_text())["status"] == "completed"


def test_bad_process_counts() -> None:
    with pytest.raises(DeeplineError, match="CPU cores"):
        check_nproc((os.cpu_count() or 1) + 1)
    with pytest.raises(ConfigError, match=r"train\.batch_size"):
        per_process_batch(65, 2)
    assert load_config(tiny_config()).train.batch_size == 64


def test_accumulation_all_reduces_gradients_once_per_update(tmp_path: Path) -> None:
    """With 4 micro-batches an update, DDP's gradient all-reduce runs on the last one only
    (``no_sync`` on the others): counted by a communication hook, one bucket per update."""
    config = ddp_config(tmp_path, epochs=None, max_steps=5, accumulate=4, batch_size=32)
    two = deepline("train", str(config), "--nproc", "2", "--run-dir", str(tmp_path / "acc"))
    assert two.returncode == 0, two.stderr + two.stdout
    status = json.loads((tmp_path / "acc" / "status.json").read_text())
    assert status["steps"] == 5 and status["gradient_all_reduces"] == 5, status
    assert status["device"] == "cpu"


def _gather_rank(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from deepline.tasks.detection import coco_scores, everyone

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=2)  # fmt: skip
    truths, detections = _shares()[rank]
    gathered = coco_scores(everyone(detections), everyone(truths), ["a", "b"])["metrics"]
    Path(out, f"rank{rank}.json").write_text(json.dumps(gathered))
    dist.destroy_process_group()


def _shares() -> list[tuple[list, list]]:
    """Two processes' validation shares: true boxes and detections of 3 images each."""
    import numpy as np

    rng = np.random.default_rng(5)
    shares = []
    for _ in range(2):
        truths, detections = [], []
        for _ in range(3):
            truth = np.array([[10, 10, 30, 30, 0], [40, 40, 70, 60, 1]], np.float32)
            truth[:, :4] += rng.uniform(0, 20, (2, 1)).astype(np.float32)
            noisy = truth[:, :4] + rng.normal(0, 4, (2, 4)).astype(np.float32)
            detections.append({"boxes": noisy, "scores": rng.uniform(0.2, 1, 2),
                               "classes": rng.integers(0, 2, 2)})  # fmt: skip
            truths.append(truth)
        shares.append((truths, detections))
    return shares


def test_detection_metrics_cover_every_processs_share(tmp_path: Path) -> None:
    """Each of two processes validates its share of the images; the mAP each computes is the
    one of all the images together (gathered over gloo), not of its own share."""
    import socket

    import torch.multiprocessing as mp

    from deepline.tasks.detection import coco_scores

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_gather_rank, args=(port, str(tmp_path)), nprocs=2, join=True)
    (t0, d0), (t1, d1) = _shares()
    together = coco_scores(d0 + d1, t0 + t1, ["a", "b"])["metrics"]
    alone = coco_scores(d0, t0, ["a", "b"])["metrics"]
    assert together["map_50"] != alone["map_50"]  # the shares do differ
    for rank in (0, 1):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == pytest.approx(together)


@pytest.mark.parametrize("method", ["fixmatch", "simclr"])
def test_few_label_methods_train_on_two_processes(tmp_path: Path, method: str) -> None:
    """The unlabelled images join each process's share of the batch in one forward pass
    (SimCLR's untrained output layer too, so DDP finds every parameter in the graph)."""
    config = ddp_config(tmp_path, epochs=None, max_steps=6, steps_per_epoch=3,
                        method={"name": method, "mu": 2} if method == "fixmatch"
                        else {"name": method})  # fmt: skip
    raw = yaml.safe_load(config.read_text())
    raw["data"]["labels_per_class"] = 4
    config.write_text(yaml.safe_dump(raw))
    two = deepline("train", str(config), "--nproc", "2", "--run-dir", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr + two.stdout
    status = json.loads((tmp_path / "two" / "status.json").read_text())
    assert status["status"] == "completed" and status["steps"] == 6
    last = status["last"]
    assert ("val/knn_accuracy" in last) if method == "simclr" else ("val/accuracy" in last)


def test_a_policy_trains_on_two_processes(tmp_path: Path) -> None:
    """Each process plays its own environments; the validation episodes are shared out and
    every process's returns count (gathered over gloo)."""
    from tests.tasks.test_policy import policy_config

    config = tmp_path / "policy.yaml"
    config.write_text(yaml.safe_dump(policy_config(epochs=1)))
    two = deepline("train", str(config), "--nproc", "2", "--run-dir", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr + two.stdout
    status = json.loads((tmp_path / "two" / "status.json").read_text())
    assert status["status"] == "completed" and status["last"]["val/episodes"] == 3


def test_a_replay_run_resumed_on_two_processes_continues_exactly(tmp_path: Path) -> None:
    """Each process plays its own environments into its own replay buffer, and the checkpoint
    keeps every process's: a DQN run cut mid-training and resumed on two processes ends with
    the weights of the uninterrupted one."""
    import shutil

    from tests.tasks.test_policy import dqn_config
    from tests.train.test_checkpoint import assert_same_weights, final_weights

    config = tmp_path / "dqn.yaml"
    raw = dqn_config(epochs=2, checkpoint={"every_steps": 3, "keep_last": 50})
    config.write_text(yaml.safe_dump(raw))
    for name in ("full", "part"):
        run = deepline("train", str(config), "--nproc", "2", "--run-dir", str(tmp_path / name))
        assert run.returncode == 0, run.stderr + run.stdout
    checkpoints = list_checkpoints(tmp_path / "part" / "checkpoints")
    kept = checkpoints[len(checkpoints) // 2]  # after the buffer of 50 has wrapped
    assert 3 < int(kept.name.split("-")[1]) < int(checkpoints[-1].name.split("-")[1])
    for later in checkpoints[checkpoints.index(kept) + 1 :]:
        shutil.rmtree(later)
    resumed = deepline("train", "--resume", str(tmp_path / "part"), "--nproc", "2")
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert "resumed from" in resumed.stderr
    assert_same_weights(final_weights(tmp_path / "full"), final_weights(tmp_path / "part"))


def test_a_released_trainer_frees_its_process_group(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Nothing DDP holds in C++ (its gradient hook) refers back to the trainer: dropped, the
    trainer and its DDP wrapper are collected, so ``cleanup()`` really ends the process group
    before interpreter exit (a group left to exit aborts gloo's worker threads)."""
    import gc
    import weakref

    import torch.distributed as dist

    from deepline.training import distributed
    from deepline.training.experiment import build_experiment

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        # a one-process group standing in for two, so the trainer wraps its model in DDP
        monkeypatch.setattr(distributed, "current", lambda: distributed.DistEnv(0, 2, 0, "gloo"))
        exp = build_experiment(load_config(tiny_config()), tmp_path / "run")
        assert exp.trainer.ddp is not None
        ddp = weakref.ref(exp.trainer.ddp)
        del exp
        gc.collect()
        assert ddp() is None, [type(r) for r in gc.get_referrers(ddp())]
    finally:
        dist.destroy_process_group()
