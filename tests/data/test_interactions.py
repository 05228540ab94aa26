"""Interaction logs: reading, implicit feedback, k-core, hold-out without leaks, tensors, and
MovieLens' archive download (from a local HTTP server)."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from deepline.config import DataConfig
from deepline.data import fetch as fetch_mod
from deepline.data.datasets.interactions import interaction_splits
from deepline.data.interactions import (
    InteractionLog,
    histories,
    implicit,
    k_core,
    read_log,
    read_titles,
    temporal,
    training_windows,
)
from deepline.errors import DataError


def random_log(seed: int = 0, users: int = 30, items: int = 25, n: int = 400) -> InteractionLog:
    rng = np.random.default_rng(seed)
    return InteractionLog(
        rng.integers(1, users + 1, n).astype(str),
        rng.integers(1, items + 1, n).astype(str),
        rng.integers(1, 6, n).astype(float),
        rng.permutation(n).astype(float) * 60 + 1e9,
    )


def user_training_items(x: torch.Tensor, y: torch.Tensor) -> dict[int, set[int]]:
    seen: dict[int, set[int]] = {}
    for row, targets in zip(x.tolist(), y.tolist()):
        seen.setdefault(row[0], set()).update(i for i in row[1:] + targets if i)
    return seen


@pytest.mark.parametrize("holdout", ["leave_one_out", "temporal"])
def test_held_out_items_never_reach_training(holdout: str) -> None:
    cfg = DataConfig(name="interactions", context=4, holdout=holdout, val_fraction=0.1,
                     test_fraction=0.1)  # fmt: skip
    data = interaction_splits(cfg, random_log(), {}, ["x"], [])
    trained = user_training_items(data.train.x, data.train.y)
    full = [[int(i) for i in h.split()] for h in data.meta.interactions["histories"]]
    for split in (data.val, data.test):
        assert len(split) > 0
        for row, target in zip(split.x.tolist(), split.y.tolist()):
            user, history = row[0], [i for i in row[1:] if i]
            assert target not in trained.get(user, set())  # never trained on
            assert target not in history  # not in what the model reads either
            position = full[user - 1].index(target)
            assert history == full[user - 1][:position]  # everything before it, in order
    if holdout == "leave_one_out":
        for user, sequence in enumerate(full, 1):
            if len(sequence) >= 3:
                assert trained[user] == set(sequence[:-2])


def test_temporal_cut_is_global() -> None:
    log = implicit(random_log(1), None)
    h = histories(log)
    held = temporal(h, 0.2, 0.2)
    cut = np.quantile(np.concatenate(h.times), 0.6)
    assert all((t[: len(s)] < cut).all() for s, t in zip(held.train, h.times))
    with pytest.raises(DataError, match="timestamps"):
        temporal(histories(InteractionLog(log.users, log.items)), 0.1, 0.1)


@pytest.mark.parametrize("stride", [None, 3, 1])
def test_every_training_interaction_is_a_target_once(stride: int | None) -> None:
    """Each pair is a target once, after the history it has, and with a stride of s it reads
    at least ``context - s + 1`` items of it (all of them when the user has fewer)."""
    context = 4
    sequences = [np.arange(1, 12), np.array([3, 4]), np.array([5])]
    x, y = training_windows(sequences, context=context, stride=stride)
    assert x.shape[1] == 1 + context and y.shape[1] == context
    least = context - (stride or context) + 1
    for user, sequence in enumerate(sequences, 1):
        inputs, targets = x[x[:, 0] == user, 1:], y[x[:, 0] == user]
        assert sorted(targets[targets > 0].tolist()) == sorted(sequence[1:].tolist())
        for row, column in (targets > 0).nonzero().tolist():
            at = int(targets[row, column]) - int(sequence[0])  # its index: items are distinct
            history = inputs[row, : column + 1]
            assert history[-1] == sequence[at - 1]  # the item just before it is the input
            assert (history > 0).sum() >= min(at, least)
    assert torch.equal(x[:, 1:][:, 1:][y[:, :-1] > 0], y[:, :-1][y[:, :-1] > 0])
    with pytest.raises(DataError, match="window_stride"):
        training_windows(sequences, context=context, stride=context + 1)
    with pytest.raises(ValueError, match=r"window_stride \(5\) must be at most data.context"):
        DataConfig(context=context, window_stride=context + 1)


def test_implicit_keeps_first_interaction_and_filters_ratings() -> None:
    users, items = np.array(["u", "u", "u", "v"]), np.array(["a", "b", "a", "a"])
    log = InteractionLog(users, items, np.array([5.0, 2, 4, 3]), np.array([3.0, 2, 1, 4]))
    kept = implicit(log, None)
    assert sorted(zip(kept.users, kept.items, kept.times)) == [
        ("u", "a", 1.0), ("u", "b", 2.0), ("v", "a", 4.0)
    ]  # fmt: skip
    assert sorted(implicit(log, 4.0).items.tolist()) == ["a"]
    with pytest.raises(DataError, match="no ratings"):
        implicit(InteractionLog(log.users, log.items), 4.0)


def test_k_core_leaves_only_well_connected_users_and_items() -> None:
    log = k_core(implicit(random_log(2, n=300), None), 5)
    for ids in (log.users, log.items):
        _, counts = np.unique(ids, return_counts=True)
        assert counts.min() >= 5
    assert len(log) > 0


def test_read_log_finds_columns_and_names_what_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("userId,movieId,rating,timestamp\n1,10,4,100\n1,11,3,90\n2,10,5,95\n")
    log = read_log(path)
    assert log.users.tolist() == ["1", "1", "2"] and log.items.tolist() == ["10", "11", "10"]
    assert histories(log).sequences[0].tolist() == [2, 1]  # 11 came first
    assert log.ratings is not None and log.ratings.tolist() == [4.0, 3.0, 5.0]
    parquet = tmp_path / "log.parquet"
    import pandas as pd

    pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"]}).to_parquet(parquet)
    assert read_log(parquet).items.tolist() == ["x", "y"]
    bad = tmp_path / "bad.csv"
    bad.write_text("who,what\n1,2\n")
    with pytest.raises(DataError, match=r"bad\.csv.*no user column"):
        read_log(bad)


def test_titles_are_latin1_with_genres(tmp_path: Path) -> None:
    path = tmp_path / "u.item"
    flags = ["0"] * 19
    flags[1] = flags[5] = "1"
    path.write_bytes(("7|Amélie (2001)|01-Jan-2001||http://x|" + "|".join(flags)).encode("latin-1"))
    assert read_titles(path) == {"7": ("Amélie (2001)", ["Action", "Comedy"])}


def test_movielens_comes_out_of_its_archive(mirror: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The catalog's URL is the GroupLens zip; only the member is kept, checked by sha256."""
    payload = b"1\t2\t5\t881250949\n"
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ml-100k/u.data", payload)
    (mirror.root / "ml-100k.zip").write_bytes(archive.getvalue())
    monkeypatch.delenv("DEEPLINE_MIRROR")  # the catalog URL itself, pointed here
    dest = mirror.root.parent / "out" / "u.data"
    url = f"{mirror.url}/ml-100k.zip"
    sha = hashlib.sha256(payload).hexdigest()
    assert fetch_mod.download(url, dest, sha, member="ml-100k/u.data").read_bytes() == payload
    assert list(dest.parent.iterdir()) == [dest]
    with pytest.raises(DataError, match="no member"):
        fetch_mod.download(url, dest.with_name("x"), sha, member="ml-100k/u.item")
    with pytest.raises(DataError, match="corrupt"):
        fetch_mod.download(url, dest.with_name("y"), "0" * 64, member="ml-100k/u.data")
    assert list(dest.parent.iterdir()) == [dest]


def test_dates_order_a_log_too(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text(
        "user,item,timestamp\na,x,2024-03-02\na,y,2024-03-01T10:00:00\nb,x,2024-01-05\n"
    )
    log = read_log(path)
    assert log.times is not None and log.times[1] < log.times[0]
    assert [histories(log).items[i - 1] for i in histories(log).sequences[0]] == ["y", "x"]
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item,timestamp\na,x,soon\n")
    with pytest.raises(DataError, match=r"bad\.csv"):
        read_log(bad)
