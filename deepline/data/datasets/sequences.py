"""Sequences for sequence classification: ``sequential-mnist`` and your texts (``text-csv``).

``sequential-mnist`` reads each MNIST image as 28 time steps (its rows) of 28 features: x is
float32 (N, T, F), normalised with the training split's statistics (the ``sequence`` codec).
``text-csv`` tokenizes a column of texts into x int64 (N, context) token ids (the ``tokens``
codec).

Token ids of ``"tokens"`` data are the tokenizer's ids shifted by ``ID_OFFSET`` (2): id 0
(``PAD_ID``) pads a short text up to ``data.context`` and id 1 (``UNK_ID``) stands for a
character the character tokenizer did not see in the training texts (byte-level BPE has none),
so ``DataMeta.vocab_size`` is the tokenizer's vocabulary plus 2. Longer texts keep their first
``data.context`` tokens. :func:`encode_texts` does the same for new texts at prediction time.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepline.config import DataConfig
from deepline.data.catalog import DataSample, DatasetSpec, RawDataset, RawSplit, register
from deepline.data.datasets.images import DIGITS, MNIST, _idx_sample, _no_files, require_path
from deepline.data.fetch import file_sha256
from deepline.data.load import read_data
from deepline.data.meta import DataMeta, DataSplits, Split
from deepline.data.splitting import split_dataset
from deepline.data.tokenizers import ID_OFFSET, encode_texts, fit_tokenizer, text_data_fingerprint
from deepline.errors import DataError
from deepline.registry import did_you_mean

SEQUENTIAL_MNIST = DatasetSpec(
    name="sequential-mnist",
    description="MNIST digits as sequences: 28 steps (image rows) x 28 features",
    licence=MNIST.licence,
    folder=MNIST.folder,  # the same four IDX files as mnist
    files=MNIST.files,
    classes=MNIST.classes,
    splits=dict(MNIST.splits),
    homepage=MNIST.homepage,
    citation=MNIST.citation,
    task="sequence_classification",
)


@register(SEQUENTIAL_MNIST, sample=_idx_sample)
def read_sequential_mnist(cfg: DataConfig, files: dict[str, Path]) -> DataSplits:
    """MNIST, split and normalised exactly as the ``mnist`` entry, with each image (1, H, W)
    read as H time steps of W features: x float32 (N, H, W)."""
    return rows_as_sequences(read_data(cfg.model_copy(update={"name": MNIST.name}), files), cfg)


SEQUENTIAL_DIGITS = DatasetSpec(
    name="sequential-digits",
    description="the bundled 8x8 digits as sequences: 8 steps (rows) x 8 features; no download",
    licence=DIGITS.licence,
    classes=DIGITS.classes,
    splits=dict(DIGITS.splits),
    homepage=DIGITS.homepage,
    citation=DIGITS.citation,
    task="sequence_classification",
)


@register(SEQUENTIAL_DIGITS, sample=_no_files)
def read_sequential_digits(cfg: DataConfig, files: dict[str, Path]) -> DataSplits:
    """The ``digits`` entry, split and normalised as it is, each image read as 8 time steps of
    8 features: x float32 (N, 8, 8)."""
    return rows_as_sequences(read_data(cfg.model_copy(update={"name": DIGITS.name}), files), cfg)


def rows_as_sequences(image: DataSplits, cfg: DataConfig) -> DataSplits:
    """Grey images (N, 1, H, W) as H time steps of W features each: (N, H, W)."""
    if cfg.channels == 3:
        raise DataError(f"data.channels=3: {cfg.name} is grey; leave data.channels unset")
    _, h, w = image.meta.input_shape  # (1, H, W)
    splits = [Split(s.x.reshape(len(s.x), h, w), s.y) for s in (image.train, image.val, image.test)]
    payload = {"dataset": cfg.name, "images": image.meta.fingerprint}
    meta = DataMeta(
        name=cfg.name,
        codec="sequence",
        input_shape=(h, w),  # (T, F)
        classes=list(image.meta.classes),
        input_scale=image.meta.input_scale,
        mean=list(image.meta.mean),
        std=list(image.meta.std),
        fingerprint=_digest(payload),
        sizes=dict(image.meta.sizes),
        files=list(image.meta.files),
    )
    return DataSplits(splits[0], splits[1], splits[2], meta)


# ---------------------------------------------------------------------------- text-csv


TEXT_CSV = DatasetSpec(
    name="text-csv",
    description="your texts (data.path): a CSV with a text column (data.text_column) and a "
    "label column (data.label_column), tokenized",
    licence="yours",
    needs_path=True,
    task="sequence_classification",
)


def _text_csv_sample(folder: Path) -> DataSample:
    """Short reviews, one with a quoted comma, labelled pos/neg."""
    rows = ["text,label"] + [
        f'"{("a fine, warm film", "dull and far too long")[i % 2]} {i}",{("pos", "neg")[i % 2]}'
        for i in range(24)
    ]
    (folder / "reviews.csv").write_text("\n".join(rows) + "\n")
    return DataSample(overrides={"path": str(folder / "reviews.csv"), "context": 16})


@register(TEXT_CSV, sample=_text_csv_sample)
def read_text_csv_entry(cfg: DataConfig, files: dict[str, Path]) -> DataSplits:
    """Texts and labels from one CSV, split as the image readers split (``data.test_fraction``
    then ``data.val_fraction``, seeded by ``data.split_seed``; ``data.limit`` caps train).

    The tokenizer (``data.tokenizer``) is fitted on the training texts only. Classes are the
    sorted distinct labels (numerically when all are integers).
    """
    path = require_path(cfg, "a .csv file with a text and a label column")
    texts, labels = read_text_csv(path, cfg.text_column, cfg.label_column)
    y, classes = label_classes(labels)
    # Split the row indices with the very code that splits images.
    rows = RawDataset(RawSplit(np.arange(len(texts)).reshape(-1, 1, 1, 1), y), classes, 1.0)
    parts = split_dataset(rows, cfg)
    train_texts = [texts[i] for i in parts[0].x.reshape(-1)]
    if not train_texts:
        raise DataError(f"{path}: no rows are left for training")
    tok = fit_tokenizer(cfg.tokenizer, train_texts, cfg.vocab_size)
    splits = [
        Split(encode_texts(tok, [texts[i] for i in p.x.reshape(-1)], cfg.context),
              torch.from_numpy(p.y))
        for p in parts
    ]  # fmt: skip
    settings = cfg.model_dump(
        include={"val_fraction", "test_fraction", "split_seed", "limit", "label_column",
                 "text_column", "tokenizer", "context"}
    )  # fmt: skip
    meta = DataMeta(
        name=cfg.name,
        codec="tokens",
        input_shape=(cfg.context,),
        classes=classes,
        input_scale=1.0,
        mean=[],
        std=[],
        fingerprint=text_data_fingerprint(cfg, [file_sha256(path)], settings, tok),
        sizes={"train": len(splits[0]), "val": len(splits[1]), "test": len(splits[2])},
        files=[str(path)],
        vocab_size=tok.vocab_size + ID_OFFSET,
        tokenizer=tok.to_json(),
    )
    return DataSplits(splits[0], splits[1], splits[2], meta)


def read_text_csv(path: Path, text_column: str, label_column: str) -> tuple[list[str], list[str]]:
    """(texts, labels) from a UTF-8 CSV with a header row; fields may be quoted (with commas
    and newlines inside)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{path} could not be read as UTF-8 CSV ({err})") from None
    if not rows:
        raise DataError(f"{path} is empty; the text-csv reader wants a header row and data rows")
    header = [h.strip() for h in rows[0]]
    columns = []
    for column, key in ((text_column, "data.text_column"), (label_column, "data.label_column")):
        if column not in header:
            raise DataError(
                f"{path} has no column '{column}' ({key}).{did_you_mean(column, header)} "
                f"Its columns: {', '.join(header[:12])}"
            )
        columns.append(header.index(column))
    ti, li = columns
    texts, labels = [], []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise DataError(
                f"{path} row {line}: {len(row)} values, but the header has {len(header)}"
            )
        if not row[li].strip():
            raise DataError(f"{path} row {line}: the label ('{label_column}') is empty")
        texts.append(row[ti])
        labels.append(row[li].strip())
    if not texts:
        raise DataError(f"{path} has a header but no data rows")
    return texts, labels


def label_classes(labels: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """(int64 indices, classes): the sorted distinct labels, numerically if all are integers."""
    distinct = set(labels)
    try:
        classes = sorted(distinct, key=int)
    except ValueError:
        classes = sorted(distinct)
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[v] for v in labels], dtype=np.int64), classes


def _digest(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
