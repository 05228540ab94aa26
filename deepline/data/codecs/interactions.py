"""What a user did, as a recommender reads it: ``[user, item indices...]`` rows.

A raw input is a known user (``{"user": "196"}``: their whole history from the bundle), a
history of item ids (``{"history": [50, 172]}``, or just the list), or both (that user's own
factors with the history given). Rows are left-padded with 0 to a multiple of ``context``, so
requests of similar length batch together; models read the last ``context`` items, and the
whole row says which items the user has seen. A user the bundle does not know, or an empty
history, decodes to an empty row: the task answers it with the most popular items.

Tensors (TF Serving, KServe V2) hold raw item ids, one history per row; negative values pad.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

import numpy as np

from deepline.data.codecs.base import INPUT_NAME, InputCodec, check_tensor_shape
from deepline.data.meta import DataMeta
from deepline.errors import InputError
from deepline.registry import CODECS

MAX_HISTORY = 10_000  # items in one raw history


@CODECS.register("interactions", example="movielens-100k")
class InteractionsCodec(InputCodec):
    """Users and item histories -> int64 (N, 1 + k * context) rows; see the module docstring."""

    name = "interactions"
    tensor_dtypes = ("int64", "int32")
    kept_elsewhere = ("items", "titles", "users", "histories")  # in the data's meta

    def __init__(self, preprocessing: Mapping[str, Any]) -> None:
        super().__init__(preprocessing)
        self.context = self.input_shape[0]
        self.items: list[str] = list(preprocessing["items"])
        self.users: list[str] = list(preprocessing["users"])
        self.histories: list[str] = preprocessing["histories"]  # "3 17 5": item indices

    @classmethod
    def preprocessing_of(cls, meta: DataMeta) -> dict[str, Any]:
        i = meta.interactions
        keep = ("items", "titles", "users", "histories")
        return {"input_shape": list(meta.input_shape), **{k: i[k] for k in keep}}

    @cached_property
    def item_index(self) -> dict[str, int]:
        return {item: n + 1 for n, item in enumerate(self.items)}

    @cached_property
    def user_index(self) -> dict[str, int]:
        return {user: n + 1 for n, user in enumerate(self.users)}

    def input_spec(self) -> dict[str, Any]:
        return {"name": INPUT_NAME, "dtype": "int64", "shape": [-1, -1]}

    def max_length(self) -> int:
        """The user column and the longest history, padded to whole contexts."""
        return 1 + self.context * -(-MAX_HISTORY // self.context)

    def form(self) -> dict[str, Any]:
        """A history to build from ``items`` ([id, title] pairs, up to 5,000 of them: people
        pick by title), or a known user."""
        titles = self.preprocessing.get("titles") or self.items
        return {
            "type": "history",
            "items": [[i, t] for i, t in zip(self.items, titles)][:5000],
            "users": len(self.users),
            "example_user": self.users[0] if self.users else None,
        }

    # -- decoding -----------------------------------------------------------------------------

    def decode(self, items: Sequence[Any]) -> np.ndarray:
        if not len(items):
            raise InputError("no inputs given")
        return self.rows([self._parse(item) for item in items])

    def decode_tensor(self, array: np.ndarray) -> np.ndarray:
        """Raw integer item ids (N, T), negative values padding."""
        if array.dtype.kind not in "ui":
            raise InputError(f"item ids in a tensor must be integers, got {array.dtype}")
        check_tensor_shape(array, [-1, -1])
        return self.rows([(0, self.indices([i for i in row if i >= 0])) for row in array.tolist()])

    def rows(self, examples: Sequence[tuple[int, list[int]]]) -> np.ndarray:
        """(user index, item indices) pairs -> the left-padded batch."""
        longest = max(len(h) for _, h in examples)
        width = self.context * max(1, -(-longest // self.context))
        batch = np.zeros((len(examples), 1 + width), dtype=np.int64)
        for row, (user, history) in zip(batch, examples):
            row[0] = user
            if history:
                row[-len(history) :] = history
        return batch

    def _parse(self, item: Any) -> tuple[int, list[int]]:
        if isinstance(item, Mapping):
            unknown = set(item) - {"user", "history"}
            if unknown or not item:
                raise InputError(
                    f"an input names a user and/or a history; got keys {sorted(item) or 'none'}"
                )
            user = self.user_index.get(_id(item["user"]), 0) if "user" in item else 0
            if "history" in item:
                return user, self.indices(_id_list(item["history"]))
            return user, [int(i) for i in self.histories[user - 1].split()] if user else []
        return 0, self.indices(_id_list(item))

    def indices(self, ids: Sequence[Any]) -> list[int]:
        """Raw item ids -> indices; an InputError naming the ids the model does not know."""
        if len(ids) > MAX_HISTORY:
            raise InputError(f"a history holds at most {MAX_HISTORY} items, got {len(ids)}")
        keys = [_id(i) for i in ids]
        unknown = [k for k in keys if k not in self.item_index]
        if unknown:
            shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise InputError(
                f"unknown item id(s): {shown} (this model knows {len(self.items)} items, e.g. "
                f"{', '.join(self.items[:3])})"
            )
        return [self.item_index[k] for k in keys]

    def sample_inputs(self, n: int, seed: int = 0) -> list[Any]:
        """Histories of 3 known items each, as lists of ids (numbers when the ids are)."""
        rng = np.random.default_rng(seed)
        picks = rng.integers(0, len(self.items), (n, 3)).tolist()
        numeric = all(i.isdigit() for i in self.items)
        return [[int(self.items[i]) if numeric else self.items[i] for i in row] for row in picks]

    # -- for monitoring and people ------------------------------------------------------------

    def summaries(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """History length and the mean popularity rank proxy (mean item index) per example."""
        items = np.asarray(batch, dtype=np.int64)[:, 1:]
        known = items > 0
        length = known.sum(1)
        return {
            "length": length.astype(np.float64),
            "mean_item": np.where(known, items, 0).sum(1) / np.maximum(length, 1),
        }


def _id(value: Any) -> str:
    """An item or user id as the log writes it: integral numbers without a decimal point."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float, np.integer)):
        raise InputError(f"an id must be text or a number, got {type(value).__name__}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _id_list(value: Any) -> list[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence | np.ndarray):
        raise InputError("a history is a list of item ids")
    return list(value)
