"""Tokenizers for text data: characters (as nanoGPT's shakespeare_char) or byte-level BPE.

Both are fitted on training text, turn text into integer ids and back, and travel as JSON in
the data metadata (``DataMeta.tokenizer``) so a bundle can encode text without training code.

>>> tok = CharTokenizer.fit("hello world")
>>> tok.vocab_size, tok.encode("hold")
(8, [3, 5, 4, 1])
>>> tok.decode(tok.encode("hold"))
'hold'
>>> load_tokenizer(tok.to_json()).encode("low") == tok.encode("low")
True

Characters outside a ``CharTokenizer``'s vocabulary are an :class:`~deepline.errors.InputError`
naming them, rather than being dropped or mapped to an "unknown" id in silence: a language model
trained on 65 characters cannot say anything useful about a 66th, and a silent substitution
would hide, say, a file read with the wrong encoding. Callers that want a lenient encoding (the
``text-csv`` reader, whose validation texts may hold characters the training texts lack) pass
``unknown=`` explicitly. The byte-level BPE has no such case: every string is bytes, and every
byte is in its vocabulary.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch

from deepline.errors import InputError

if TYPE_CHECKING:
    import tokenizers

    from deepline.config import DataConfig

# Token sequences fed to a classifier (the ``tokens`` codec) shift every tokenizer id
# by ``ID_OFFSET`` so that 0 can pad and 1 can stand for a character the tokenizer never saw.
PAD_ID = 0
UNK_ID = 1
ID_OFFSET = 2

_FORMAT_VERSION = 1


@runtime_checkable
class Tokenizer(Protocol):
    """What every tokenizer offers: ids in ``range(vocab_size)``, and a JSON form."""

    @property
    def kind(self) -> str: ...

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def to_json(self) -> str: ...


class CharTokenizer:
    """One id per distinct character, in sorted order (nanoGPT's ``shakespeare_char``)."""

    kind = "char"

    def __init__(self, chars: Sequence[str]) -> None:
        if any(len(c) != 1 for c in chars) or len(set(chars)) != len(chars):
            raise ValueError("a CharTokenizer wants distinct single characters")
        self.chars = list(chars)
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def fit(cls, text: str | Iterable[str]) -> CharTokenizer:
        """The sorted distinct characters of ``text`` (one string, or several)."""
        seen: set[str] = set()
        for part in [text] if isinstance(text, str) else text:
            seen.update(part)
        return cls(sorted(seen))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str, unknown: int | None = None) -> list[int]:
        """Ids of the characters of ``text``; an unknown character is an ``InputError``, or
        gets the id ``unknown`` when one is given."""
        stoi = self.stoi
        try:
            return [stoi[c] for c in text]
        except KeyError:
            if unknown is not None:
                return [stoi.get(c, unknown) for c in text]
            raise self._unknown_error(text) from None

    def encode_batch(self, texts: Sequence[str], unknown: int | None = None) -> list[list[int]]:
        return [self.encode(t, unknown) for t in texts]

    def decode(self, ids: Sequence[int]) -> str:
        ids = [int(i) for i in ids]
        bad = sorted({i for i in ids if not 0 <= i < len(self.chars)})
        if bad:
            raise InputError(
                f"token ids {bad[:10]} are outside this character vocabulary "
                f"(ids 0..{len(self.chars) - 1})"
            )
        return "".join([self.chars[i] for i in ids])

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "version": _FORMAT_VERSION, "chars": self.chars})

    def _unknown_error(self, text: str) -> InputError:
        missing = sorted({c for c in text if c not in self.stoi})
        shown = ", ".join(repr(c) for c in missing[:10]) + (" ..." if len(missing) > 10 else "")
        allowed = "".join(c for c in self.chars if c.isprintable() and not c.isspace())
        return InputError(
            f"{len(missing)} character(s) are not in this tokenizer's vocabulary of "
            f"{self.vocab_size}, which was fitted on the training text: {shown}. "
            f"It knows, for example: {allowed[:40]!r}."
        )

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


class BPETokenizer:
    """Byte-level BPE (as GPT-2) trained with the Hugging Face ``tokenizers`` library.

    Text is split into UTF-8 bytes first, so any string encodes and ``decode`` gives it back.
    """

    kind = "bpe"

    def __init__(self, tokenizer: tokenizers.Tokenizer) -> None:
        self.tokenizer = tokenizer

    @classmethod
    def fit(cls, text: str | Iterable[str], vocab_size: int) -> BPETokenizer:
        """Learn merges on ``text`` up to ``vocab_size`` ids: the 256 bytes, then merges.

        A small text may give fewer ids than asked (when no pair is left to merge).
        """
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers, trainers

        if vocab_size < 256:
            raise ValueError(f"a byte-level BPE needs vocab_size >= 256, got {vocab_size}")
        tok = HFTokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte, seen or not
            show_progress=False,
        )
        texts = text.splitlines(keepends=True) if isinstance(text, str) else text
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.get_vocab_size())

    def encode(self, text: str) -> list[int]:
        ids: list[int] = self.tokenizer.encode(text, add_special_tokens=False).ids
        return ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Many texts at once (in parallel threads)."""
        encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [e.ids for e in encodings]

    def decode(self, ids: Sequence[int]) -> str:
        ids = [int(i) for i in ids]
        bad = sorted({i for i in ids if not 0 <= i < self.vocab_size})
        if bad:  # the library would skip them without a word
            raise InputError(
                f"token ids {bad[:10]} are outside this BPE vocabulary "
                f"(ids 0..{self.vocab_size - 1})"
            )
        text: str = self.tokenizer.decode(ids, skip_special_tokens=False)
        return text

    def to_json(self) -> str:
        """Our envelope around the library's own JSON (``tokenizer.json``)."""
        inner = json.loads(self.tokenizer.to_str())
        return json.dumps({"kind": self.kind, "version": _FORMAT_VERSION, "tokenizer": inner})

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size})"


def fit_tokenizer(kind: str, text: str | Sequence[str], vocab_size: int = 512) -> Tokenizer:
    """``CharTokenizer.fit(text)`` for ``kind="char"``, ``BPETokenizer.fit`` for ``"bpe"``."""
    if kind == "char":
        return CharTokenizer.fit(text)
    if kind == "bpe":
        return BPETokenizer.fit(text, vocab_size)
    raise ValueError(f"data.tokenizer: unknown tokenizer '{kind}'; use 'char' or 'bpe'")


def load_tokenizer(text_json: str) -> Tokenizer:
    """The tokenizer written by ``to_json``; also reads a Hugging Face ``tokenizer.json``.

    >>> load_tokenizer(CharTokenizer.fit("abc").to_json()).vocab_size
    3
    """
    try:
        data: Any = json.loads(text_json)
    except (TypeError, ValueError) as err:
        raise InputError(f"the tokenizer is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise InputError("the tokenizer JSON should be an object with a 'kind'")
    if "model" in data and "kind" not in data:  # a bare Hugging Face tokenizer.json
        data = {"kind": "bpe", "tokenizer": data}
    kind = data.get("kind")
    try:
        if kind == "char":
            return CharTokenizer(data["chars"])
        if kind == "bpe":
            from tokenizers import Tokenizer as HFTokenizer

            return BPETokenizer(HFTokenizer.from_str(json.dumps(data["tokenizer"])))
    except Exception as err:  # KeyError, TypeError, and the library's own Exception
        raise InputError(f"the '{kind}' tokenizer JSON is malformed ({err})") from None
    raise InputError(f"unknown tokenizer kind {kind!r} in the JSON; known: 'char', 'bpe'")


def tokenizer_fingerprint(tok: Tokenizer) -> str:
    """sha256 hex of the tokenizer's JSON: equal fingerprints encode text identically."""
    return hashlib.sha256(tok.to_json().encode()).hexdigest()


def text_data_fingerprint(
    cfg: DataConfig, sources: list[str], settings: dict[str, Any], tok: Tokenizer
) -> str:
    """sha256 hex of what tokenized data depends on: the dataset, its source files, the settings
    that shape it (with the BPE vocabulary size) and the tokenizer fitted on it."""
    if cfg.tokenizer == "bpe":
        settings = {**settings, "vocab_size": cfg.vocab_size}
    payload = {
        "dataset": cfg.name,
        "sources": sources,
        "settings": settings,
        "tokenizer": tokenizer_fingerprint(tok),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def encode_texts(tok: Tokenizer, texts: Sequence[str], context: int) -> torch.Tensor:
    """Texts -> int64 (N, context): tokenizer ids + ``ID_OFFSET``, cut to ``context`` tokens,
    padded with ``PAD_ID``; characters the character tokenizer lacks become ``UNK_ID``.

    >>> from deepline.data.tokenizers import CharTokenizer
    >>> encode_texts(CharTokenizer.fit("abc"), ["ba", "abcd"], context=3).tolist()
    [[3, 2, 0], [2, 3, 4]]
    """
    if isinstance(tok, CharTokenizer):
        encoded = tok.encode_batch(texts, unknown=UNK_ID - ID_OFFSET)
    elif hasattr(tok, "encode_batch"):
        encoded = tok.encode_batch(texts)
    else:
        encoded = [tok.encode(t) for t in texts]
    out = torch.full((len(texts), context), PAD_ID, dtype=torch.int64)
    for row, ids in enumerate(encoded):
        ids = ids[:context]
        if ids:
            out[row, : len(ids)] = torch.tensor(ids, dtype=torch.int64) + ID_OFFSET
    return out
