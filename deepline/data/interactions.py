"""Interaction logs -> per-user chronological histories -> held-out splits as tensors.

A log is rows of (user, item[, rating][, timestamp]): MovieLens' ``u.data`` or any CSV or
Parquet file with those columns. Feedback is implicit: a user's first interaction with an item
counts, later ones with the same item are dropped, and ``data.min_rating`` keeps only ratings
at or above it. ``data.k_core`` removes users and items with too few interactions, repeatedly.

Items get indices 1..V-1 (0 pads histories), users 1..U (0 is an anonymous history). Splits
(``data.holdout``):

- ``leave_one_out``: each user's last item is the test target (history: everything before),
  the one before is the validation target (history: everything before that), and the rest
  trains. Users with fewer than 3 items only train.
- ``temporal``: two global time cuts leave the latest ``test_fraction`` and the
  ``val_fraction`` before them out; a user's first item after a cut is its target, the
  history everything before the cut.

Tensors: a training row is ``[user, i_1 .. i_L]`` with next-item targets ``[i_2 .. i_L+1]``
(each user's training items cut into windows of ``data.context`` from the end, left-padded,
so every training interaction is a target once); an evaluation row is ``[user, whole history]``
left-padded to the split's longest, with the target item. Models read the last ``context``
items; the whole history says which items the user has seen.

>>> log = InteractionLog(np.array(["u", "u", "u", "v"]), np.array(["a", "b", "c", "a"]))
>>> h = histories(log)
>>> h.items, [list(s) for s in h.sequences]
(['a', 'b', 'c'], [[1, 2, 3], [1]])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepline.errors import DataError

USER_ALIASES = ("user", "user_id", "userId", "uid")
ITEM_ALIASES = ("item", "item_id", "itemId", "movieId", "iid")
RATING_ALIASES = ("rating", "score")
TIME_ALIASES = ("timestamp", "time", "ts")


@dataclass
class InteractionLog:
    """One interaction per position: raw user and item ids (text), optional ratings and times."""

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray | None = None
    times: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.users)

    def take(self, keep: np.ndarray) -> InteractionLog:
        pick = lambda a: None if a is None else a[keep]  # noqa: E731
        return InteractionLog(self.users[keep], self.items[keep], pick(self.ratings),
                              pick(self.times))  # fmt: skip


# ---------------------------------------------------------------------------- reading


def read_movielens(path: Path) -> InteractionLog:
    """MovieLens ``u.data``: tab-separated ``user item rating timestamp``, no header."""
    import pandas as pd

    try:
        frame = pd.read_csv(path, sep="\t", header=None, dtype=str, names=["u", "i", "r", "t"])
        ratings, times = frame["r"].astype(float).to_numpy(), frame["t"].astype(np.int64)
    except (OSError, ValueError, KeyError) as err:
        raise DataError(f"{path} is not a MovieLens ratings file ({err})") from None
    return InteractionLog(
        frame["u"].to_numpy(str), frame["i"].to_numpy(str), ratings, times.to_numpy()
    )


def read_log(path: Path) -> InteractionLog:
    """A CSV (with a header) or Parquet file with user and item columns, and optionally rating
    and timestamp ones (each under one of the usual names, e.g. ``user_id``, ``movieId``)."""
    import pandas as pd

    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, dtype=str, skipinitialspace=True)
    except (OSError, ValueError, ImportError) as err:
        raise DataError(f"'{path}' is not a readable table ({err})") from None
    columns = {str(c).strip(): c for c in frame.columns}

    def column(aliases: tuple[str, ...], required: bool) -> Any:
        name = next((columns[a] for a in aliases if a in columns), None)
        if name is None and required:
            raise DataError(
                f"'{path}' has no {aliases[0]} column (looked for {', '.join(aliases)}; it has "
                f"{', '.join(columns)})"
            )
        return None if name is None else frame[name]

    users, items = column(USER_ALIASES, True), column(ITEM_ALIASES, True)
    ratings, times = column(RATING_ALIASES, False), column(TIME_ALIASES, False)
    try:
        rating_values = None if ratings is None else ratings.astype(float).to_numpy()
        time_values = None if times is None else _times(times)
    except (ValueError, TypeError) as err:
        raise DataError(
            f"'{path}': a rating is not a number, or a time neither a number nor an ISO 8601 "
            f"date ({str(err).splitlines()[0]})"
        ) from None
    if users.isna().any() or items.isna().any():
        raise DataError(f"'{path}': some rows have no user or no item")
    return InteractionLog(
        users.astype(str).str.strip().to_numpy(str),
        items.astype(str).str.strip().to_numpy(str),
        rating_values,
        time_values,
    )


def _times(values: Any) -> np.ndarray:
    """Unix seconds, or ISO 8601 dates and times (any mix of precisions; UTC unless they say
    otherwise) turned into them."""
    import pandas as pd

    try:
        return values.astype(float).to_numpy()
    except (ValueError, TypeError):
        stamps = pd.to_datetime(values, format="ISO8601", utc=True)
        return stamps.astype("int64").to_numpy() / 1e9


def read_titles(path: Path) -> dict[str, tuple[str, list[str]]]:
    """MovieLens ``u.item`` (latin-1, ``|``-separated): item id -> (title, genres), the genres
    named by ``u.genre``'s order (the last 19 fields are flags)."""
    genres = (
        "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
        "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
        "Romance", "Sci-Fi", "Thriller", "War", "Western",
    )  # fmt: skip
    titles: dict[str, tuple[str, list[str]]] = {}
    for number, line in enumerate(path.read_bytes().decode("latin-1").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) < 5 + len(genres):
            raise DataError(f"{path}, line {number}: expected 24 '|'-separated fields")
        flags = fields[-len(genres) :]
        titles[fields[0]] = (fields[1], [g for g, f in zip(genres, flags) if f == "1"])
    return titles


def read_item_table(path: Path) -> dict[str, tuple[str, list[str]]]:
    """A CSV or Parquet file of items: item id -> (title, genres), from an item column (named
    as :func:`read_log` names it), ``title``, and optionally ``genres`` ('|'-separated)."""
    import pandas as pd

    try:
        frame = pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else (
            pd.read_csv(path, dtype=str, keep_default_na=False))  # fmt: skip
    except (OSError, ValueError, ImportError) as err:
        raise DataError(f"'{path}' is not a readable table ({err})") from None
    item = next((c for c in ITEM_ALIASES if c in frame.columns), None)
    if item is None or "title" not in frame.columns:
        raise DataError(f"'{path}' needs an item column ({', '.join(ITEM_ALIASES)}) and 'title'")
    genres = frame["genres"] if "genres" in frame.columns else [""] * len(frame)
    return {
        str(i).strip(): (str(t), [g for g in str(gs).split("|") if g])
        for i, t, gs in zip(frame[item], frame["title"], genres)
    }


# ---------------------------------------------------------------------------- cleaning


def implicit(log: InteractionLog, min_rating: float | None) -> InteractionLog:
    """Ratings below ``min_rating`` dropped (when given), then each (user, item) pair's first
    interaction kept (the earliest, ties in file order)."""
    if min_rating is not None:
        if log.ratings is None:
            raise DataError("data.min_rating: this log has no ratings")
        log = log.take(log.ratings >= min_rating)
    order = _chronological(log)
    _, users = np.unique(log.users[order], return_inverse=True)
    items, item_codes = np.unique(log.items[order], return_inverse=True)
    _, first = np.unique(users * len(items) + item_codes, return_index=True)
    return log.take(np.sort(order[first]))


def k_core(log: InteractionLog, k: int) -> InteractionLog:
    """Users and items with fewer than ``k`` interactions removed until none is left."""
    if k <= 1:
        return log
    while True:
        _, user_inverse, user_counts = np.unique(log.users, return_inverse=True, return_counts=True)
        _, item_inverse, item_counts = np.unique(log.items, return_inverse=True, return_counts=True)
        keep = (user_counts[user_inverse] >= k) & (item_counts[item_inverse] >= k)
        if keep.all():
            return log
        log = log.take(keep)


def _chronological(log: InteractionLog) -> np.ndarray:
    """Row order by time (stable: ties, and logs without times, keep the file's order)."""
    if log.times is None:
        return np.arange(len(log))
    return np.argsort(log.times, kind="stable")


# ---------------------------------------------------------------------------- histories


@dataclass
class Histories:
    """Each user's items in time order, as indices into ``items`` (1-based; 0 pads)."""

    users: list[str]  # raw id of user index u + 1
    items: list[str]  # raw id of item index i + 1
    sequences: list[np.ndarray]  # int64 item indices, per user
    times: list[np.ndarray] | None = None  # their times, per user, when the log has them

    @property
    def num_items(self) -> int:
        """Item indices are < num_items (0 included)."""
        return len(self.items) + 1


def histories(log: InteractionLog) -> Histories:
    """Users and items numbered in their ids' natural order (numbers as numbers), and each
    user's items sorted by time."""
    if not len(log):
        raise DataError("the interaction log is empty (after filtering)")
    users, items = _natural_sorted(np.unique(log.users)), _natural_sorted(np.unique(log.items))
    user_index = {u: n for n, u in enumerate(users)}
    item_index = {i: n + 1 for n, i in enumerate(items)}
    order = _chronological(log)
    by_user: list[list[int]] = [[] for _ in users]
    times: list[list[float]] = [[] for _ in users]
    for row in order:
        u = user_index[log.users[row]]
        by_user[u].append(item_index[log.items[row]])
        if log.times is not None:
            times[u].append(float(log.times[row]))
    sequences = [np.asarray(s, dtype=np.int64) for s in by_user]
    stamps = [np.asarray(t) for t in times] if log.times is not None else None
    return Histories(list(users), list(items), sequences, stamps)


def _natural_sorted(ids: np.ndarray) -> list[str]:
    try:
        return sorted(ids.tolist(), key=float)
    except ValueError:
        return sorted(ids.tolist())


# ---------------------------------------------------------------------------- hold-out


@dataclass
class Examples:
    """Evaluation examples: user index (1-based), history (item indices), target item."""

    users: list[int] = field(default_factory=list)
    histories: list[np.ndarray] = field(default_factory=list)
    targets: list[int] = field(default_factory=list)

    def add(self, user: int, history: np.ndarray, target: int) -> None:
        self.users.append(user)
        self.histories.append(history)
        self.targets.append(target)


@dataclass
class HeldOut:
    train: list[np.ndarray]  # per user (index u - 1): the items training sees
    val: Examples
    test: Examples


def leave_one_out(h: Histories) -> HeldOut:
    """Last item tests, the one before validates, the rest trains (users with 3 or more)."""
    train, val, test = [], Examples(), Examples()
    for u, seq in enumerate(h.sequences, 1):
        if len(seq) < 3:
            train.append(seq)
            continue
        train.append(seq[:-2])
        val.add(u, seq[:-2], int(seq[-2]))
        test.add(u, seq[:-1], int(seq[-1]))
    return HeldOut(train, val, test)


def temporal(h: Histories, val_fraction: float, test_fraction: float) -> HeldOut:
    """Global time cuts at the quantiles leaving the latest ``test_fraction`` of interactions
    to test and the ``val_fraction`` before them to validate."""
    if h.times is None:
        raise DataError("data.holdout=temporal: this log has no timestamps")
    if not test_fraction > 0:
        raise DataError("data.holdout=temporal needs data.test_fraction > 0")
    stamps = np.concatenate(h.times)
    test_cut = np.quantile(stamps, 1.0 - test_fraction)
    val_cut = np.quantile(stamps, max(0.0, 1.0 - test_fraction - val_fraction))
    train, val, test = [], Examples(), Examples()
    for u, (seq, t) in enumerate(zip(h.sequences, h.times), 1):
        train.append(seq[t < val_cut])
        for examples, start, end in ((val, val_cut, test_cut), (test, test_cut, np.inf)):
            after = np.flatnonzero((t >= start) & (t < end))
            if len(after) and after[0] > 0:  # a target with some history before it
                examples.add(u, seq[: after[0]], int(seq[after[0]]))
    return HeldOut(train, val, test)


# ---------------------------------------------------------------------------- tensors


def training_windows(
    train: list[np.ndarray], context: int, stride: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``[user, items]`` (W, 1 + context) and next-item targets (W, context), left-padded:
    each user's (input, next) pairs in windows of ``context`` ending every ``stride`` pairs
    from the end (default: ``context``, windows side by side).

    Every pair is a target once, in the latest window that holds it, so each target reads at
    least ``context - stride + 1`` items of history when the user has them; the targets a
    window leaves to the window before it are padding (0).
    """
    stride = stride or context
    if stride > context:
        raise DataError(f"data.window_stride ({stride}) must be at most data.context ({context})")
    rows, targets = [], []
    for u, seq in enumerate(train, 1):
        for end in range(len(seq) - 1, 0, -stride):  # pairs (seq[i], seq[i + 1]), i < end
            start = max(0, end - context)
            first = max(start, end - stride)  # earlier pairs: the window before it trains them
            rows.append(np.concatenate([[u], _left_pad(seq[start:end], context)]))
            targets.append(_left_pad(seq[first + 1 : end + 1], context))
    if not rows:
        raise DataError("no user has two training interactions: nothing to learn from")
    return torch.from_numpy(np.stack(rows)), torch.from_numpy(np.stack(targets))


def evaluation_rows(examples: Examples) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``[user, whole history]`` left-padded to the longest (N, 1 + H), targets (N,)."""
    width = max((len(h) for h in examples.histories), default=1)
    rows = [np.concatenate([[u], _left_pad(h, width)]) for u, h in
            zip(examples.users, examples.histories)]  # fmt: skip
    x = np.stack(rows) if rows else np.zeros((0, 1 + width), dtype=np.int64)
    return torch.from_numpy(x.astype(np.int64)), torch.tensor(examples.targets, dtype=torch.int64)


def _left_pad(seq: np.ndarray, width: int) -> np.ndarray:
    out = np.zeros(width, dtype=np.int64)
    if len(seq):
        out[-len(seq) :] = seq[-width:]
    return out


def item_counts(train: list[np.ndarray], num_items: int) -> list[int]:
    """Training interactions per item index (index 0, padding, counts none)."""
    counts = np.bincount(np.concatenate([*train, np.zeros(0, np.int64)]), minlength=num_items)
    counts[0] = 0
    return counts.astype(int).tolist()
