"""Text for language modelling: ``tinyshakespeare``, and ``text-file`` for your own text.

A text dataset's splits hold one int64 token stream each (``Split.x``, ``y`` empty); training
draws random windows of it with :class:`~deepline.data.loaders.WindowLoader` (nanoGPT's
``get_batch``) and validation walks non-overlapping windows (the ``text`` codec).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from deepline.config import DataConfig
from deepline.data.catalog import DataFile, DataSample, DatasetSpec, register
from deepline.data.datasets.images import require_path
from deepline.data.meta import DataMeta, DataSplits, Split
from deepline.data.tokenizers import Tokenizer, fit_tokenizer, text_data_fingerprint
from deepline.errors import DataError, InputError

TINYSHAKESPEARE = DatasetSpec(
    name="tinyshakespeare",
    description="Shakespeare's plays, 1.1M characters, for language modelling; nanoGPT's "
    "split (in characters)",
    licence="public domain text (char-rnn: MIT)",
    folder="tinyshakespeare",
    files=(
        DataFile(
            "input.txt",
            "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/"
            "input.txt",
            "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
            1115394,
        ),
    ),
    splits={"train": 1_003_854, "val": 111_540},  # characters
    homepage="https://github.com/karpathy/char-rnn",
    citation="Karpathy, The Unreasonable Effectiveness of Recurrent Neural Networks, 2015",
    task="language_modelling",
)
TRAIN_FRACTION = 0.9  # nanoGPT's shakespeare_char: data[:int(n * 0.9)] is train


def _text_sample(folder: Path) -> DataSample:
    """About 3 KB of verse-like lines, as ``input.txt`` and as a file for ``data.path``."""
    words = ("the", "king", "shall", "speak", "of", "love", "and", "night", "to", "thee")
    lines = [
        " ".join(words[(i * 7 + j * 3) % len(words)] for j in range(6 + i % 4)).capitalize()
        + (",\n" if i % 3 else ".\n")
        for i in range(80)
    ]
    path = folder / "input.txt"
    path.write_text("".join(lines))
    return DataSample({"input.txt": path}, {"path": str(path), "context": 16})


@register(TINYSHAKESPEARE, sample=_text_sample)
def read_tinyshakespeare(cfg: DataConfig, files: dict[str, Path]) -> DataSplits:
    """Tiny Shakespeare as token streams: the first 90% of the characters train, the rest val.

    The split is nanoGPT's and fixed (``data.val_fraction`` / ``test_fraction`` do not apply);
    test is the validation stream. The tokenizer (``data.tokenizer``) is fitted on the training
    text only. nanoGPT fits its character vocabulary on the whole text; here the 65 characters
    are the same either way, and fitting on train alone keeps validation honest for any text.
    ``data.limit`` caps the training tokens.
    """
    path = files["input.txt"]
    text = read_text(path)
    cut = int(len(text) * TRAIN_FRACTION)
    return text_bundle(
        cfg,
        train=text[:cut],
        val=text[cut:],
        sources=[TINYSHAKESPEARE.files[0].sha256],
        files=[str(path)],
    )


def read_text(path: Path) -> str:
    """A UTF-8 text file, newlines as written (a byte order mark is dropped)."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text ({err})") from None
    except OSError as err:
        raise DataError(f"{path} could not be read ({err})") from None


def text_bundle(
    cfg: DataConfig,
    train: str,
    val: str,
    test: str | None = None,
    sources: list[str] | None = None,
    files: list[str] | None = None,
) -> DataSplits:
    """Token streams of train/val/test text (test defaults to val), with the tokenizer fitted
    on ``train``; meta ``codec="text"``, ``input_shape=(cfg.context,)``."""
    tok = fit_tokenizer(cfg.tokenizer, train, cfg.vocab_size)
    test = val if test is None else test
    streams = {"train": encode_stream(tok, train, "train")}
    if cfg.limit is not None:
        streams["train"] = streams["train"][: cfg.limit]
    streams["val"] = encode_stream(tok, val, "val")
    streams["test"] = streams["val"] if test is val else encode_stream(tok, test, "test")
    for name, stream in streams.items():
        if name != "test" and len(stream) <= cfg.context:  # a window needs context + 1 tokens
            raise DataError(
                f"data.context={cfg.context}: the {name} text has only {len(stream)} tokens; "
                f"a window needs context + 1"
            )
    settings = cfg.model_dump(include={"tokenizer", "limit"})
    sources = sources or [hashlib.sha256((train + val + test).encode()).hexdigest()]
    meta = DataMeta(
        name=cfg.name,
        codec="text",
        input_shape=(cfg.context,),
        classes=[],
        input_scale=1.0,
        mean=[],
        std=[],
        fingerprint=text_data_fingerprint(cfg, sources, settings, tok),
        sizes={k: len(v) for k, v in streams.items()},
        files=list(files or []),
        vocab_size=tok.vocab_size,
        tokenizer=tok.to_json(),
    )
    empty = torch.empty(0, dtype=torch.int64)
    splits = {k: Split(v, empty) for k, v in streams.items()}
    return DataSplits(splits["train"], splits["val"], splits["test"], meta)


def encode_stream(tok: Tokenizer, text: str, split: str) -> torch.Tensor:
    """``text`` as a 1-D int64 tensor of token ids."""
    try:
        ids = tok.encode(text)
    except InputError as err:
        raise DataError(f"the {split} text cannot be encoded: {err}") from None
    return torch.tensor(ids, dtype=torch.int64)


@register(
    DatasetSpec(
        name="text-file",
        description="your text (data.path): a UTF-8 file for language modelling; the first "
        "90% trains, the rest validates",
        licence="yours",
        needs_path=True,
        task="language_modelling",
    ),
    sample=_text_sample,
)
def read_text_file(cfg: DataConfig, files: dict[str, Path]) -> DataSplits:
    """A UTF-8 text file split like ``tinyshakespeare`` (the first 90% of its characters
    train, the rest validate and test), with the tokenizer fitted on the training part."""
    path = require_path(cfg, "a UTF-8 text file")
    text = read_text(path)
    cut = int(len(text) * TRAIN_FRACTION)
    return text_bundle(cfg, train=text[:cut], val=text[cut:], files=[str(path)])
