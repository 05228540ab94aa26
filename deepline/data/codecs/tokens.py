"""Texts as token ids: ``tokens`` for classifiers (padded to the context), ``text`` for language
models (prompts to continue). Both carry their tokenizer, checked by sha256 in the bundle."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from deepline.data.codecs.base import INPUT_NAME, InputCodec, as_text, check_tensor_shape
from deepline.data.meta import DataMeta
from deepline.data.tokenizers import (
    ID_OFFSET,
    PAD_ID,
    UNK_ID,
    Tokenizer,
    encode_texts,
    load_tokenizer,
)
from deepline.errors import InputError
from deepline.registry import CODECS


class TokenCodec(InputCodec):
    """What both token codecs share: the tokenizer, the context and checks of token ids."""

    tensor_dtypes = ("int64", "int32")
    takes_bytes = True  # texts, as UTF-8
    kept_elsewhere = ("tokenizer",)  # tokenizer.json

    def __init__(self, preprocessing: dict[str, Any]) -> None:
        super().__init__(preprocessing)
        self.context = self.input_shape[0]
        self.vocab_size = int(preprocessing.get("vocab_size") or 0)

    @classmethod
    def preprocessing_of(cls, meta: DataMeta) -> dict[str, Any]:
        return {
            "input_shape": list(meta.input_shape),
            "context": meta.input_shape[0],
            "vocab_size": meta.vocab_size,
            "tokenizer": meta.tokenizer,
        }

    @cached_property
    def tokenizer(self) -> Tokenizer:
        text = self.preprocessing.get("tokenizer")
        if not text:
            raise InputError("this model's bundle has no tokenizer")
        return load_tokenizer(text)

    def form(self) -> dict[str, Any]:
        return {"type": "text"}

    def sample_inputs(self, n: int, seed: int = 0) -> list[Any]:
        """Texts of a few tokens the tokenizer knows."""
        rng = np.random.default_rng(seed)
        size = self.tokenizer.vocab_size
        return [self.tokenizer.decode(rng.integers(0, size, 6).tolist()) for _ in range(n)]

    def decode_tensor(self, array: np.ndarray) -> np.ndarray:
        """Token ids (N, T), 1 <= T <= context, each in range(vocab_size)."""
        if array.dtype.kind not in "ui":
            raise InputError(f"token ids must be integers, got {array.dtype}")
        check_tensor_shape(array, self.input_spec()["shape"])
        if not 1 <= array.shape[1] <= self.context:
            raise InputError(
                f"sequences must hold 1 to {self.context} tokens, got {array.shape[1]}"
            )
        if self.vocab_size and (array.min() < 0 or array.max() >= self.vocab_size):
            raise InputError(f"token ids must lie in [0, {self.vocab_size - 1}]")
        return array.astype(np.int64)

    def read_file(self, path: Path) -> list[tuple[str, Any]]:
        """A UTF-8 text file is one input."""
        try:
            return [(str(path), path.read_text(encoding="utf-8"))]
        except UnicodeDecodeError:
            raise InputError(f"'{path}' is not UTF-8 text") from None

    def summaries(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Length (tokens that are not padding) and the mean token id of each example."""
        ids = np.asarray(batch, dtype=np.int64).reshape(len(batch), -1)
        return {"length": (ids != PAD_ID).sum(1).astype(np.float64), "mean": ids.mean(1)}


@CODECS.register("tokens", example="text-csv")
class TokensCodec(TokenCodec):
    """Texts to classify -> int64 (N, context): ids shifted by ``id_offset``, padded with
    ``pad_id``, a character the vocabulary lacks as ``unk_id``; longer texts keep their start."""

    name = "tokens"

    @classmethod
    def preprocessing_of(cls, meta: DataMeta) -> dict[str, Any]:
        return {**super().preprocessing_of(meta), "pad_id": PAD_ID, "unk_id": UNK_ID,
                "id_offset": ID_OFFSET}  # fmt: skip

    def input_spec(self) -> dict[str, Any]:
        return {"name": INPUT_NAME, "dtype": "int64", "shape": [-1, -1]}

    def decode(self, items: Sequence[Any]) -> np.ndarray:
        if not len(items):
            raise InputError("no inputs given")
        texts = [as_text(item) for item in items]
        return encode_texts(self.tokenizer, texts, self.context).numpy()

    def pieces(self, ids: np.ndarray) -> list[str]:
        """Each position's text; padding shows as "" and unknown characters as "?"."""
        special = {PAD_ID: "", UNK_ID: "?"}
        return [
            special[i] if i in special else self.tokenizer.decode([i - ID_OFFSET])
            for i in np.asarray(ids).tolist()
        ]


@CODECS.register("text", example="text-file")
class TextCodec(TokenCodec):
    """Prompts for a language model: ``encode`` gives a prompt's token ids (the model reads
    windows of exactly ``context`` ids); ``decode`` is for classifiers and refuses."""

    name = "text"

    def input_spec(self) -> dict[str, Any]:
        # exported at a fixed context (positions are learned up to it); generation pads on the right
        return {"name": INPUT_NAME, "dtype": "int64", "shape": [-1, self.context]}

    def decode(self, items: Sequence[Any]) -> np.ndarray:
        raise InputError("a language model continues prompts: ask it to generate text")

    def encode(self, prompt: Any) -> list[int]:
        """A prompt's token ids (InputError for characters the vocabulary lacks)."""
        return self.tokenizer.encode(as_text(prompt))

    def text(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids)

    def model_input(self, item: Any) -> np.ndarray:
        """A prompt's last ``context`` token ids (its next token is what gets explained)."""
        ids = self.encode(item)[-self.context :]
        if not ids:
            raise InputError("the prompt is empty")
        return np.asarray(ids, dtype=np.int64)

    def pieces(self, ids: np.ndarray) -> list[str]:
        return [self.tokenizer.decode([i]) for i in np.asarray(ids).tolist()]
