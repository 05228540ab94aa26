"""Training on a device, checked on the CPU: device resolution and its errors, precision with
fp16's gradient scaler resumed exactly, accumulation equal to one large batch, host reads per
step, CPU checkpoints, prefetching that resumes where training is, and torch.compile."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from deepline.config import load_config
from deepline.data.loaders import BatchLoader
from deepline.errors import ConfigError
from deepline.training.checkpoint import list_checkpoints, load_checkpoint
from deepline.training.device import Precision, Prefetcher, resolve_device
from deepline.training.experiment import run_training
from deepline.training.loop import EagerOnFailure
from tests.conftest import tiny_config
from tests.train.test_checkpoint import assert_same_weights, final_weights


def test_devices_are_resolved_or_refused_by_name() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")  # no GPU on this machine
    for spec in ("cuda", "cuda:1"):
        with pytest.raises(ConfigError, match=rf"train.device: '{spec}' was asked for.*no CUDA"):
            resolve_device(spec)
    with pytest.raises(ConfigError, match="no MPS device"):
        resolve_device("mps")
    with pytest.raises(ConfigError, match=r"train\.device: unknown device\. Allowed: auto, cpu"):
        load_config({"train": {"device": "gpu"}})
    assert load_config({"train": {"precision": 32}}).train.precision == "32"  # YAML's int


def test_a_device_that_is_not_here_makes_no_run_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cuda"):
        run_training(load_config(tiny_config(device="cuda")), tmp_path)
    assert not list(tmp_path.rglob("config.yaml"))


def test_precisions_autocast_and_scale() -> None:
    layer = nn.Linear(4, 2)
    for precision, dtype in (("32", torch.float32), ("bf16", torch.bfloat16),
                             ("fp16", torch.float16)):  # fmt: skip
        chosen = Precision(precision, torch.device("cpu"))
        with chosen.autocast():
            assert layer(torch.randn(3, 4)).dtype == dtype
        assert chosen.scaling == (precision == "fp16")


def test_accumulating_four_batches_is_one_batch_of_four_times_the_size(tmp_path: Path) -> None:
    """No BatchNorm, dropout or augmentation: 4 micro-batches of 32 make the update one batch of
    128 makes (the mean of the 4 means, on the same 128 examples in the same order)."""

    def config(batch_size: int, accumulate: int) -> dict:  # type: ignore[type-arg]
        raw = tiny_config(epochs=None, max_steps=1, batch_size=batch_size, accumulate=accumulate,
                          optimizer="sgd", lr=0.5, checkpoint={"keep_last": 1})  # fmt: skip
        raw["model"] = {"name": "mlp", "hidden": [32], "dropout": 0.0}
        raw["data"]["augment"] = {"shift": 0}
        return raw

    one = run_training(load_config(config(128, 1)), tmp_path / "one")
    four = run_training(load_config(config(32, 4)), tmp_path / "four")
    assert one.trainer.step == four.trainer.step == 1
    for (name, a), b in zip(one.model.state_dict().items(), four.model.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)


def test_the_host_waits_once_per_step_at_most(tmp_path: Path) -> None:
    """Host reads: one per update for the non-finite guard's fused check, one per log step and
    one per epoch; none for logging between log steps (the losses add up on the device)."""
    raw = tiny_config(epochs=2, log_every_steps=5, accumulate=2)
    trainer = run_training(load_config(raw), tmp_path).trainer
    steps, epochs = trainer.step, trainer.epoch
    assert steps == 2 * 11 and epochs == 2  # 21 batches of 64 an epoch, 2 per update
    assert trainer.host_reads == steps + steps // 5 + epochs


def test_fp16_scaler_state_is_checkpointed_and_resumed_exactly(tmp_path: Path) -> None:
    raw = tiny_config(epochs=2, precision="fp16", checkpoint={"every_steps": 10, "keep_last": 20})
    full = run_training(load_config(raw), tmp_path / "full")
    scale = full.trainer.precision.scaler.get_scale()
    assert scale > 1  # the scaler ran (it starts at 2**16 and moves with the gradients)
    part = run_training(load_config(raw), tmp_path / "part")
    checkpoints = list_checkpoints(part.run_dir / "checkpoints")
    cut = checkpoints[2]  # step 30, mid-epoch 1
    _, state = load_checkpoint(cut)
    assert state["scaler"]["scale"] > 1 and "_growth_tracker" in state["scaler"]
    for later in checkpoints[3:]:
        shutil.rmtree(later)
    resumed = run_training(None, run_dir=part.run_dir)
    assert resumed.trainer.precision.scaler.get_scale() == scale
    assert_same_weights(final_weights(full.run_dir), final_weights(part.run_dir))


def test_checkpoints_hold_cpu_copies(tmp_path: Path) -> None:
    run = run_training(load_config(tiny_config(epochs=1)), tmp_path)
    tensors, values = run.trainer.state_dict()
    assert all(t.device.type == "cpu" for group in tensors.values() for t in group.values())
    assert values["epoch_batches"] == 0 and values["scaler"] == {}  # fp32: no scaler state


def test_a_gpu_runs_optimizer_state_loads_on_the_cpu(tmp_path: Path) -> None:
    """On CUDA, Adam runs fused; its saved state says so. Loaded on the CPU, the optimizer
    keeps this device's kernels and the state's numbers, and goes on training."""
    run = run_training(load_config(tiny_config(epochs=1, optimizer="adamw")), tmp_path)
    tensors, values = run.trainer.state_dict()
    assert [g["fused"] for g in values["optimizer"]["param_groups"]] == [None, None]
    for group in values["optimizer"]["param_groups"]:
        group["fused"] = True  # as written by a GPU run
    again = run_training(load_config(tiny_config(epochs=2, optimizer="adamw")), tmp_path / "b")
    again.trainer.load_state_dict(tensors, values)
    assert [g["fused"] for g in again.trainer.optimizer.param_groups] == [None, None]
    state = again.trainer.optimizer.state_dict()["state"]
    assert torch.equal(state[0]["exp_avg"], tensors["state"]["optimizer.0.exp_avg"])
    again.trainer.fit()


def test_prefetching_reports_the_batch_in_use(tmp_path: Path) -> None:
    """Reading one batch ahead must not move the position a checkpoint records: a loader
    restored from the prefetcher's state goes on with the batch after the one in use."""
    x, y = torch.randn(50, 3), torch.arange(50)
    plain = BatchLoader(x, y, 8, shuffle=True, seed=3)
    ahead = Prefetcher(BatchLoader(x, y, 8, shuffle=True, seed=3), torch.device("cpu"))
    for (a, _), (b, _) in zip(plain, ahead):
        assert torch.equal(a, b)
        assert ahead.state_dict() == plain.state_dict()
        if plain.position == 3:
            break
    restored = BatchLoader(x, y, 8, shuffle=True, seed=3)
    restored.load_state_dict(ahead.state_dict())
    assert torch.equal(next(iter(restored))[0], next(iter(plain))[0])
    ahead.set_epoch(1)
    assert (ahead.epoch, ahead.position) == (1, 0)


def test_compile_trains_and_a_failing_compiler_falls_back_to_eager(tmp_path: Path) -> None:
    raw = tiny_config(epochs=None, max_steps=8, compile=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no fallback warning: it compiled
        run = run_training(load_config(raw), tmp_path / "compiled")
    assert isinstance(run.trainer.forward_model, EagerOnFailure)
    assert not run.trainer.forward_model.failed and run.trainer.step == 8

    def broken_backend(graph: torch.fx.GraphModule, inputs: list[torch.Tensor]) -> None:
        raise RuntimeError("this backend cannot compile")

    model = EagerOnFailure(nn.Linear(3, 2), backend=broken_backend)
    with pytest.warns(UserWarning, match="torch.compile failed.*eager mode"):
        out = model(torch.randn(4, 3))
    assert out.shape == (4, 2) and model.failed
    assert model(torch.randn(1, 3)).shape == (1, 2)  # and stays eager, without a new warning
