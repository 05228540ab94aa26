"""Interaction logs for recommendation: ``movielens-100k``, and ``interactions`` for your own log
(CSV or Parquet with user and item columns, ``data.path``); both through
``deepline.data.interactions`` (held-out splits as described there)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from deepline.config import DataConfig
from deepline.data.catalog import DataFile, DataSample, DatasetSpec, register
from deepline.data.datasets.images import require_path
from deepline.data.interactions import (
    InteractionLog,
    evaluation_rows,
    histories,
    implicit,
    item_counts,
    k_core,
    leave_one_out,
    read_item_table,
    read_log,
    read_movielens,
    read_titles,
    temporal,
    training_windows,
)
from deepline.data.meta import DataMeta, DataSplits, Split
from deepline.errors import DataError

ML100K_ZIP = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
MOVIELENS_100K = DatasetSpec(
    name="movielens-100k",
    description="MovieLens 100K: 100,000 ratings (1-5, timestamped) by 943 users of 1,682 "
    "movies, as implicit feedback with titles and genres; leave-one-out by default",
    licence="GroupLens research-only licence: no redistribution, no commercial use",
    folder="movielens-100k",
    files=(
        DataFile(
            "u.data",
            ML100K_ZIP,
            "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
            1979173,
            member="ml-100k/u.data",
        ),
        DataFile(
            "u.item",
            ML100K_ZIP,
            "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
            236344,
            member="ml-100k/u.item",
        ),
    ),
    splits={"users": 943, "items": 1682, "interactions": 100_000},
    homepage="https://grouplens.org/datasets/movielens/100k/",
    citation="Harper and Konstan, The MovieLens Datasets: History and Context, ACM TiiS 5(4), 2015",
    task="sequential_recommendation",
)
GENRE_FLAGS = 19


def _movielens_sample(folder: Path) -> DataSample:
    """12 users rating 10 movies over time, in MovieLens' own two formats."""
    lines = []
    for user in range(1, 13):
        for step in range(3 + user % 4):
            item = (user * 3 + step * 7) % 10 + 1  # distinct for the 6 steps
            lines.append(f"{user}\t{item}\t{1 + (user + step) % 5}\t{880000000 + user * 97 + step}")
    (folder / "u.data").write_text("\n".join(lines) + "\n")
    flags = "|".join("1" if g == 5 else "0" for g in range(GENRE_FLAGS))
    movies = [
        f"{i}|Movie {i} (199{i % 10})|01-Jan-1995||http://x/{i}|{flags}" for i in range(1, 11)
    ]
    (folder / "u.item").write_bytes(("\n".join(movies) + "\n").encode("latin-1"))
    return DataSample({"u.data": folder / "u.data", "u.item": folder / "u.item"}, {"context": 4})


@register(MOVIELENS_100K, sample=_movielens_sample)
def read_movielens_100k(cfg: DataConfig, files: dict[str, Path]) -> DataSplits:
    """``u.data`` as implicit feedback, held out per ``data.holdout``; titles and genres from
    ``u.item``."""
    log = read_movielens(files["u.data"])
    sources = [f.sha256 for f in MOVIELENS_100K.files]
    return interaction_splits(cfg, log, read_titles(files["u.item"]), sources,
                              [str(p) for p in files.values()])  # fmt: skip


def _log_sample(folder: Path) -> DataSample:
    path = folder / "log.csv"
    rows = ["user_id,item_id,rating,timestamp"]
    for user in range(1, 9):
        rows += [
            f"u{user},i{(user + step * 3) % 7},4,{1000 + user * 10 + step}" for step in range(4)
        ]
    path.write_text("\n".join(rows) + "\n")
    items = folder / "items.csv"
    items.write_text("item_id,title,genres\n" + "".join(f"i{i},Film {i},Drama|War\n"
                                                        for i in range(7)))  # fmt: skip
    return DataSample({}, {"path": str(path), "items_path": str(items), "context": 3})


@register(
    DatasetSpec(
        name="interactions",
        description="your interaction log (data.path): CSV or Parquet with user and item "
        "columns, optionally rating and timestamp",
        licence="yours",
        needs_path=True,
        task="sequential_recommendation",
    ),
    sample=_log_sample,
)
def read_interactions(cfg: DataConfig, files: dict[str, Path]) -> DataSplits:
    """A log of yours; items are shown by their titles when ``data.items_path`` gives them,
    else by their ids."""
    path = require_path(cfg, "a CSV or Parquet interaction log")
    paths = [path] + ([Path(cfg.items_path).expanduser()] if cfg.items_path else [])
    try:
        digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    except OSError as err:
        raise DataError(f"data.items_path: {err}") from None
    titles = read_item_table(paths[1]) if cfg.items_path else {}
    return interaction_splits(cfg, read_log(path), titles, digests, [str(p) for p in paths])


def interaction_splits(
    cfg: DataConfig,
    log: InteractionLog,
    titles: dict[str, tuple[str, list[str]]],
    sources: list[str],
    files: list[str],
) -> DataSplits:
    """A log -> implicit, k-core filtered histories -> held-out splits and their meta."""
    h = histories(k_core(implicit(log, cfg.min_rating), cfg.k_core))
    if cfg.holdout == "temporal":
        held = temporal(h, cfg.val_fraction, cfg.test_fraction)
    else:
        held = leave_one_out(h)
    train = Split(*training_windows(held.train, cfg.context, cfg.window_stride))
    val, test = Split(*evaluation_rows(held.val)), Split(*evaluation_rows(held.test))
    interactions = {
        "items": h.items,
        "titles": [titles.get(i, (i, []))[0] for i in h.items],
        "genres": [titles.get(i, (i, []))[1] for i in h.items],
        "users": h.users,
        "counts": item_counts(held.train, h.num_items),
        # one line per user in data.json and bundle.json: "3 17 5"
        "histories": [" ".join(map(str, s.tolist())) for s in h.sequences],
    }
    settings = cfg.model_dump(include={"holdout", "min_rating", "k_core", "context",
                                       "val_fraction", "test_fraction"})  # fmt: skip
    payload = json.dumps({"dataset": cfg.name, "sources": sources, "settings": settings},
                         sort_keys=True)  # fmt: skip
    meta = DataMeta(
        name=cfg.name,
        codec="interactions",
        input_shape=(cfg.context,),
        classes=[],
        input_scale=1.0,
        mean=[],
        std=[],
        fingerprint=hashlib.sha256(payload.encode()).hexdigest(),
        sizes={"train": len(train), "val": len(val), "test": len(test)},
        files=files,
        vocab_size=h.num_items,
        interactions=interactions,
    )
    return DataSplits(train, val, test, meta)
