"""Magnitude pruning: the right weights go, they stay zero through fine-tuning, the moving
average, a resume and the ONNX export."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from deepline.config import PruneConfig, load_config
from deepline.deploy.export import export_run
from deepline.errors import ConfigError
from deepline.training.callbacks.pruning import magnitude_masks, prunable, scheduled_amount
from deepline.training.checkpoint import list_checkpoints, load_checkpoint
from deepline.training.experiment import run_training
from tests.train.test_checkpoint import assert_same_weights, final_weights


def test_masks_keep_the_largest_weights_globally_or_per_layer() -> None:
    torch.manual_seed(0)
    a, b = torch.randn(40, 10), 10 + torch.rand(5, 4)  # b's weights are all larger
    (ma, mb) = magnitude_masks([a, b], 0.5, "global")
    assert int(ma.sum() + mb.sum()) == 210  # exactly half of 420 kept
    assert int(mb.sum()) == 20  # the large layer keeps everything
    kept, dropped = a.abs()[ma.bool()], a.abs()[~ma.bool()]
    assert kept.min() >= dropped.max()
    (la, lb) = magnitude_masks([a, b], 0.5, "layer")
    assert int(la.sum()) == 200 and int(lb.sum()) == 10
    config = PruneConfig(amount=0.8, steps=3)
    assert scheduled_amount(config, 1) == pytest.approx(0.8 * (1 - (2 / 3) ** 3))
    assert scheduled_amount(config, 3) == scheduled_amount(config, 5) == pytest.approx(0.8)


def prunable_zeros(model_state: dict[str, torch.Tensor], names: list[str]) -> int:
    return sum(int((model_state[n] == 0).sum()) for n in names)


def test_pruned_weights_stay_zero_through_training_averaging_and_export(
    tiny: dict[str, Any], tmp_path: Path
) -> None:
    raw = {**tiny, "train": {**tiny["train"], "epochs": 3, "ema": 0.9,
                             "checkpoint": {"keep_last": 50},
                             "prune": {"amount": 0.7, "steps": 2}}}  # fmt: skip
    exp = run_training(load_config(raw), tmp_path / "runs")
    names = [f"{n}.weight" for n, m in exp.model.named_modules()
             if any(m is t for t, _ in prunable(exp.model))]  # fmt: skip
    total = sum(exp.model.state_dict()[n].numel() for n in names)
    tensors, _ = load_checkpoint(list_checkpoints(exp.run_dir / "checkpoints")[-1])
    pruned = round(0.7 * total)
    assert prunable_zeros(tensors["model"], names) == pruned
    assert prunable_zeros(tensors["ema"], names) == pruned
    first = load_checkpoint(list_checkpoints(exp.run_dir / "checkpoints")[0])[0]["model"]
    assert prunable_zeros(first, names) < pruned  # the cubic schedule's first event
    bundle = Path(export_run(exp.run_dir, formats=["onnx"])["bundle"])
    graph = onnx.load(str(bundle / "model.onnx")).graph
    zeros = sum(int((numpy_helper.to_array(t) == 0).sum()) for t in graph.initializer
                if np.asarray(numpy_helper.to_array(t)).ndim > 1)  # fmt: skip
    assert zeros >= pruned


def test_a_pruned_run_resumes_exactly(tiny: dict[str, Any], tmp_path: Path) -> None:
    raw = {**tiny, "train": {**tiny["train"], "epochs": 3, "checkpoint": {"keep_last": 50},
                             "prune": {"amount": 0.6, "steps": 2}}}  # fmt: skip
    full = run_training(load_config(raw), tmp_path / "full")
    part = run_training(load_config(raw), tmp_path / "part")
    checkpoints = list_checkpoints(part.run_dir / "checkpoints")
    for later in checkpoints[1:]:  # back to the end of epoch 1, between the two events
        shutil.rmtree(later)
    run_training(None, run_dir=part.run_dir)
    assert_same_weights(final_weights(full.run_dir), final_weights(part.run_dir))


def test_an_amount_of_one_or_more_and_pairs_are_refused() -> None:
    base = {"data": {"name": "digits"}, "model": {"name": "mlp"}}
    prune = {"prune": {"amount": 0.5}}
    with pytest.raises(ConfigError, match=r"train\.privacy cannot be combined with train\.prune"):
        load_config({**base, "train": {**prune, "privacy": {"noise_multiplier": 1.0}}})
    with pytest.raises(ConfigError, match=r"federated cannot be combined with train\.prune"):
        load_config({**base, "train": prune, "federated": {}})
    with pytest.raises(ConfigError, match=r"train\.prune\.amount"):
        load_config({"data": {"name": "digits"}, "model": {"name": "mlp"},
                     "train": {"prune": {"amount": 1.0}}})  # fmt: skip


def test_a_channel_pruned_run_resumes_exactly(tiny: dict[str, Any], tmp_path: Path) -> None:
    """The channels are removed again, the same ones, before the checkpoint is loaded."""
    raw = {**tiny, "train": {**tiny["train"], "epochs": 2, "checkpoint": {"keep_last": 50},
                             "prune": {"amount": 0.5, "structure": "channels"}}}  # fmt: skip
    full = run_training(load_config(raw), tmp_path / "full")
    assert full.model.features[0].out_channels == 4  # half of the config's 8
    part = run_training(load_config(raw), tmp_path / "part")
    for later in list_checkpoints(part.run_dir / "checkpoints")[1:]:
        shutil.rmtree(later)
    run_training(None, run_dir=part.run_dir)
    assert_same_weights(final_weights(full.run_dir), final_weights(part.run_dir))
    with pytest.raises(ConfigError, match="channels are removed once"):
        load_config({**raw, "train": {**raw["train"], "prune": {
            "amount": 0.5, "structure": "channels", "steps": 2}}})  # fmt: skip


def test_a_pruned_model_is_stored_compactly_and_runs_from_its_compact_file(
    tiny: dict[str, Any], tmp_path: Path
) -> None:
    from deepline.deploy.formats.compact import decode_model, encode_model
    from deepline.deploy.predictor import Predictor

    raw = {**tiny, "train": {**tiny["train"], "epochs": 2, "prune": {"amount": 0.9}}}
    exp = run_training(load_config(raw), tmp_path / "runs")
    report = export_run(exp.run_dir, formats=["onnx", "compact"])
    entry, bundle = report["formats"]["compact"], Path(report["bundle"])
    assert entry["ok"] and entry["nonzero"] < 0.2 * entry["parameters"], entry
    assert entry["times_smaller"] > 5, entry  # 10% of the weights, 5 bits each, plus a mask
    assert (bundle / entry["graph"]).stat().st_size == entry["graph_bytes"]
    model = onnx.load(str(bundle / "model.onnx"))
    weights, graph = encode_model(onnx.load(str(bundle / "model.onnx")), 8)
    expanded = {
        t.name: numpy_helper.to_array(t) for t in decode_model(weights, graph).graph.initializer
    }
    for tensor in model.graph.initializer:
        original = numpy_helper.to_array(tensor)
        decoded = expanded[tensor.name]
        assert decoded.shape == original.shape and decoded.dtype == original.dtype
        np.testing.assert_array_equal(decoded == 0, original == 0)  # the same zeros
        if original.size >= 256:  # 256 shared values, placed by k-means: closer than evenly
            step = (original.max() - original.min()) / 255
            assert np.abs(decoded - original).mean() <= step / 4
        else:
            np.testing.assert_array_equal(decoded, original)
    compact, eager = Predictor(bundle, "compact"), Predictor(bundle, "torch")
    samples = eager.codec.sample_inputs(16)
    agree = [a[0]["class"] == b[0]["class"] for a, b in
             zip(compact.predict(samples), eager.predict(samples))]  # fmt: skip
    assert sum(agree) >= 14
