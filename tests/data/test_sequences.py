"""Sequence data: text-csv on CSVs written here (sequential-mnist: test_real_datasets.py)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from deepline.config import DataConfig
from deepline.data import DataMeta, load_data
from deepline.data.codecs import codec_for
from deepline.data.tokenizers import (
    ID_OFFSET,
    PAD_ID,
    UNK_ID,
    BPETokenizer,
    encode_texts,
    load_tokenizer,
)
from deepline.errors import DataError

# ---------------------------------------------------------------------------- text-csv

REVIEWS = [
    ("a fine, warm film", "pos"),
    ("dull and far too long", "neg"),
    ('she said "wow"\nand left happy', "pos"),
    ("not good", "neg"),
    ("great fun", "pos"),
    ("boring", "neg"),
]


def write_csv(path: Path, rows: list[tuple[str, str]], header: tuple[str, str] = ("text", "label"),
              extra: bool = True) -> Path:  # fmt: skip
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow((*header, "id") if extra else header)
        for i, (text, label) in enumerate(rows):
            writer.writerow((text, label, i) if extra else (text, label))
    return path


def many_reviews(n: int) -> list[tuple[str, str]]:
    return [(f"{REVIEWS[i % 6][0]} #{i}", REVIEWS[i % 6][1]) for i in range(n)]


def test_text_csv_char(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "reviews.csv", many_reviews(50))
    cfg = DataConfig(name="text-csv", path=str(path), context=24)
    b = load_data(cfg)
    m = b.meta
    assert m.codec == "tokens" and m.classes == ["neg", "pos"] and m.input_shape == (24,)
    assert m.sizes == {"train": 36, "val": 4, "test": 10}  # test 20%, then val 10% of the rest
    for split in (b.train, b.val, b.test):
        assert split.x.dtype == torch.int64 and split.x.shape[1:] == (24,)
        assert split.y.dtype == torch.int64 and len(split.x) == len(split.y)
    assert m.tokenizer is not None and m.vocab_size is not None
    tok = load_tokenizer(m.tokenizer)
    assert m.vocab_size == tok.vocab_size + ID_OFFSET and int(b.train.x.max()) < m.vocab_size
    # Each row is its text's ids shifted by ID_OFFSET, cut to the context, padded with PAD_ID.
    texts = {t: label for t, label in many_reviews(50)}
    for row, label in zip(b.train.x, b.train.y, strict=True):
        ids = row[row != PAD_ID]
        text = tok.decode((ids - ID_OFFSET).tolist())
        matches = [t for t in texts if t.startswith(text)]
        assert matches and all(m.classes[int(label)] == texts[t] for t in matches)
        assert len(ids) == min(24, len(matches[0])) and bool((row[len(ids) :] == PAD_ID).all())
    pre = codec_for(m).preprocessing
    assert (pre["pad_id"], pre["unk_id"], pre["id_offset"]) == (PAD_ID, UNK_ID, ID_OFFSET)
    assert pre["context"] == 24 and pre["tokenizer"] == m.tokenizer
    assert DataMeta.from_dict(json.loads(json.dumps(m.to_dict()))) == m
    # Deterministic; the fingerprint follows the settings.
    again = load_data(cfg)
    assert torch.equal(again.train.x, b.train.x) and again.meta.fingerprint == m.fingerprint
    assert load_data(cfg.model_copy(update={"context": 12})).meta.fingerprint != m.fingerprint


def test_text_csv_unknown_characters_and_padding() -> None:
    from deepline.data.tokenizers import CharTokenizer

    tok = CharTokenizer.fit("abc")
    x = encode_texts(tok, ["", "cab", "abz!", "abcabc"], context=4)
    assert x.tolist() == [[0, 0, 0, 0], [4, 2, 3, 0], [2, 3, UNK_ID, UNK_ID], [2, 3, 4, 2]]


def test_text_csv_bpe_and_integer_labels(tmp_path: Path) -> None:
    rows = [(text, str([2, 10, 1][i % 3])) for i, (text, _) in enumerate(many_reviews(30))]
    path = write_csv(tmp_path / "r.csv", rows, header=("review", "stars"))
    cfg = DataConfig(
        name="text-csv",
        path=str(path),
        tokenizer="bpe",
        vocab_size=300,
        text_column="review",
        label_column="stars",
        context=16,
        val_fraction=0.0,
    )
    b = load_data(cfg)
    assert b.meta.classes == ["1", "2", "10"]  # sorted as numbers
    assert b.meta.sizes == {"train": 24, "val": 0, "test": 6}
    assert b.meta.tokenizer is not None
    tok = load_tokenizer(b.meta.tokenizer)
    assert isinstance(tok, BPETokenizer) and b.meta.vocab_size == tok.vocab_size + ID_OFFSET
    assert int(b.test.x.min()) >= 0 and not bool((b.test.x == UNK_ID).any())  # bytes: no UNK
    assert torch.bincount(torch.cat([b.train.y, b.test.y])).tolist() == [10, 10, 10]
    x = encode_texts(tok, ["great fun ☃"], context=16)
    assert tok.decode((x[0][x[0] != PAD_ID] - ID_OFFSET).tolist()) == "great fun ☃"


def test_text_csv_errors(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "r.csv", many_reviews(10))
    with pytest.raises(DataError, match="Did you mean 'text'"):
        load_data(DataConfig(name="text-csv", path=str(path), text_column="txt"))
    with pytest.raises(DataError, match=r"data\.label_column"):
        load_data(DataConfig(name="text-csv", path=str(path), label_column="class"))
    with pytest.raises(DataError, match=r"data\.path"):
        load_data(DataConfig(name="text-csv"))
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("text,label\nfine,pos\ntoo,many,values\n")
    with pytest.raises(DataError, match="row 3"):
        load_data(DataConfig(name="text-csv", path=str(ragged)))
    (tmp_path / "empty.csv").write_text("text,label\n")
    with pytest.raises(DataError, match="no data rows"):
        load_data(DataConfig(name="text-csv", path=str(tmp_path / "empty.csv")))
