"""Few labels: the labelled subset, the strong augmentations, and FixMatch / pseudo-labels
training without ever reading the unlabelled images' labels."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from deepline.config import DataConfig, load_config
from deepline.data import load_data
from deepline.data.randaugment import RandAugment
from deepline.errors import ConfigError, DataError
from deepline.training.experiment import build_experiment


def test_the_labelled_subset_is_class_balanced_seeded_and_from_the_training_split() -> None:
    full = load_data(DataConfig(name="digits"))
    few = load_data(DataConfig(name="digits", labels_per_class=3))
    assert few.train.y.bincount().tolist() == [3] * 10
    assert few.meta.sizes["train"] == 30
    assert few.meta.sizes["unlabelled"] == len(full.train) - 30
    assert few.unlabelled is not None and len(few.unlabelled) == len(full.train) - 30
    assert torch.equal(few.test.y, full.test.y) and torch.equal(few.val.y, full.val.y)
    # normalised by the statistics of every training image, labelled or not: the same pixels
    assert few.meta.mean == pytest.approx(full.meta.mean) and few.meta.std == pytest.approx(
        full.meta.std
    )

    def rows(x: torch.Tensor) -> set[tuple[float, ...]]:
        return {tuple(torch.round(r, decimals=4).tolist()) for r in x.flatten(1)}

    labelled, held_out = rows(few.train.x), rows(torch.cat([full.test.x, full.val.x]))
    assert labelled <= rows(full.train.x)
    assert not labelled & held_out
    again = load_data(DataConfig(name="digits", labels_per_class=3))
    other = load_data(DataConfig(name="digits", labels_per_class=3, labels_seed=1))
    assert torch.equal(again.train.x, few.train.x)
    assert not torch.equal(other.train.x, few.train.x)
    assert few.meta.fingerprint != other.meta.fingerprint != full.meta.fingerprint


def test_a_fraction_of_each_class_and_bad_budgets() -> None:
    few = load_data(DataConfig(name="digits", labels_per_class=0.1))
    counts = few.train.y.bincount()
    assert counts.min() >= 10 and counts.max() <= 15
    with pytest.raises(DataError, match="has only"):
        load_data(DataConfig(name="digits", labels_per_class=1000))
    with pytest.raises(DataError, match="a count must be whole"):
        load_data(DataConfig(name="digits", labels_per_class=2.5))
    with pytest.raises(DataError, match="not one"):
        load_data(DataConfig(name="diabetes", labels_per_class=3))


def test_strong_augmentations_keep_pixels_in_range() -> None:
    g = torch.Generator().manual_seed(0)
    for ops in (1, 2, 5, 12):
        x = torch.rand(64, 3, 16, 16, generator=g)
        x[:8] = 0.0
        x[8:16] = 1.0
        out = RandAugment(ops)(x, torch.Generator().manual_seed(ops))
        assert out.shape == x.shape and out.dtype == x.dtype
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
        assert torch.isfinite(out).all()
        assert not torch.equal(out, x)


def config(method: str, **train: object) -> dict:
    return {
        "name": "few", "seed": 0,
        "data": {"name": "digits", "labels_per_class": 4, "augment": {"shift": 1}},
        "model": {"name": "lenet", "channels": [4, 8], "hidden": 16, "dropout": 0.0},
        "train": {"max_steps": 60, "steps_per_epoch": 20, "batch_size": 16, "num_threads": 1,
                  "lr": 0.01,
                  "log_every_steps": 3, "tensorboard": False,
                  "method": {"name": method, "mu": 2, "threshold": 0.2}, **train},
    }  # fmt: skip


@pytest.mark.parametrize("method", ["fixmatch", "pseudo_label"])
def test_hidden_labels_never_reach_the_loss(method: str, tmp_path: Path) -> None:
    """Scrambling the unlabelled images' labels changes the logged target accuracy, and not
    one weight of the training."""
    cfg = load_config(config(method))
    data = load_data(cfg.data)
    scrambled = copy.deepcopy(data)
    assert scrambled.unlabelled is not None
    scrambled.unlabelled.y = (scrambled.unlabelled.y + 1) % 10
    runs = []
    for i, d in enumerate((data, scrambled)):
        (tmp_path / str(i)).mkdir()
        exp = build_experiment(cfg, tmp_path / str(i), data=d)
        exp.trainer.fit()
        runs.append(exp)
    for a, b in zip(runs[0].model.parameters(), runs[1].model.parameters(), strict=True):
        assert torch.equal(a, b)
    logs = [r.trainer.logs for r in runs]
    assert logs[0]["train/pseudo_rate"] == logs[1]["train/pseudo_rate"] > 0
    assert logs[0]["train/pseudo_accuracy"] > logs[1]["train/pseudo_accuracy"]


def test_the_method_needs_unlabelled_images_and_class_predictions(tmp_path: Path) -> None:
    raw = config("fixmatch")
    raw["data"].pop("labels_per_class")
    with pytest.raises(ConfigError, match=r"set data.labels_per_class"):
        build_experiment(load_config(raw), tmp_path)
    with pytest.raises(ConfigError, match=r"train.privacy cannot be combined with train.method"):
        load_config(config("fixmatch", privacy={"noise_multiplier": 1.0}))
    with pytest.raises(ConfigError, match=r"federated cannot be combined with train.method"):
        load_config({**config("fixmatch"), "federated": {}})


def test_fixmatch_resumes_exactly_mid_epoch(tmp_path: Path) -> None:
    """The unlabelled images, their augmentations and the targets are functions of the step:
    stopping at a checkpoint and resuming gives the uninterrupted run's weights."""
    import shutil

    from deepline.training.checkpoint import list_checkpoints
    from deepline.training.experiment import run_training
    from tests.train.test_checkpoint import assert_same_weights, final_weights

    raw = config("fixmatch", checkpoint={"every_steps": 7, "keep_last": 50})
    full = run_training(load_config(raw), tmp_path / "full")
    part = run_training(load_config(raw), tmp_path / "part")
    checkpoints = list_checkpoints(part.run_dir / "checkpoints")
    cut = next(c for c in checkpoints if c.name.endswith("00000028"))  # inside epoch 2
    for later in checkpoints[checkpoints.index(cut) + 1 :]:
        shutil.rmtree(later)
    resumed = run_training(None, run_dir=part.run_dir)
    assert resumed.trainer.step == full.trainer.step == 60
    assert_same_weights(final_weights(full.run_dir), final_weights(part.run_dir))


def test_nt_xent_is_the_papers_loss() -> None:
    """-log( exp(sim(i, j) / t) / sum_{k != i} exp(sim(i, k) / t) ), averaged over all 2N rows."""
    from deepline.training.callbacks.contrastive import nt_xent

    torch.manual_seed(0)
    z = torch.randn(6, 5)
    n, t = 3, 0.5
    unit = torch.nn.functional.normalize(z, dim=1)
    losses = []
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        others = [k for k in range(2 * n) if k != i]
        denominator = sum(torch.exp(unit[i] @ unit[k] / t) for k in others)
        losses.append(-torch.log(torch.exp(unit[i] @ unit[j] / t) / denominator))
    assert nt_xent(z, t).item() == pytest.approx(torch.stack(losses).mean().item(), rel=1e-5)


def test_simclr_pretrains_an_encoder_that_a_linear_probe_starts_from(tmp_path: Path) -> None:
    from deepline.training.experiment import run_training

    raw = config("fixmatch")
    raw["train"]["method"] = {"name": "simclr"}
    raw["train"]["checkpoint"] = {"monitor": "val/knn_accuracy", "mode": "max"}
    pre = run_training(load_config(raw), tmp_path / "runs")
    assert 0.0 <= pre.trainer.logs["val/knn_accuracy"] <= 1.0
    probe = config("fixmatch", max_steps=10)
    probe["train"].pop("method")
    probe["model"].update(init_from=str(pre.run_dir), freeze=["features", "classifier.2"])
    (tmp_path / "probe").mkdir()
    exp = build_experiment(load_config(probe), tmp_path / "probe")
    before = {k: v.clone() for k, v in exp.model.state_dict().items()}
    exp.trainer.fit()
    after = exp.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    # only the output layer learns (and batch norm's running statistics move)
    assert {k for k in changed if not k.startswith("features.")} == {
        "classifier.5.weight",
        "classifier.5.bias",
    }
    assert not any(k.endswith(("weight", "bias")) for k in changed if k.startswith("features."))
    with pytest.raises(ConfigError, match=r"model.freeze: 'encoder' names no parameter"):
        probe["model"]["freeze"] = ["encoder"]
        build_experiment(load_config(probe), tmp_path / "probe")
