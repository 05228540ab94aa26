"""Text data: tokenizers, the text-file entry (on a few KB of Shakespeare committed with the
tests) and language-model windows. The tinyshakespeare file itself: test_real_datasets.py."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepline.config import DataConfig
from deepline.data import DataMeta, DataSplits, load_data
from deepline.data.codecs import codec_for
from deepline.data.loaders import WindowLoader, eval_windows
from deepline.data.tokenizers import (
    BPETokenizer,
    CharTokenizer,
    Tokenizer,
    load_tokenizer,
    tokenizer_fingerprint,
)
from deepline.errors import DataError, InputError

ROMEO = Path(__file__).parents[1] / "fixtures" / "romeo.txt"  # 7 KB of Romeo and Juliet


@pytest.fixture(scope="module")
def text() -> str:
    return ROMEO.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def char_bundle() -> DataSplits:
    return load_data(DataConfig(name="text-file", path=str(ROMEO)))


@pytest.fixture(scope="module")
def bpe(text: str) -> Tokenizer:
    return BPETokenizer.fit(text[: int(len(text) * 0.9)], 512)


# ---------------------------------------------------------------------------- text files


def test_char_out_of_vocabulary_names_the_characters() -> None:
    tok = CharTokenizer.fit("abc def")
    with pytest.raises(InputError) as err:
        tok.encode("a café ☃ b")
    message = str(err.value)
    assert "'é'" in message and "'☃'" in message and "2 character(s)" in message
    assert "abcdef" in message  # a few of the allowed ones
    assert tok.encode("ax", unknown=-1) == [1, -1]
    with pytest.raises(InputError, match="outside"):
        tok.decode([0, 7])


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text())
def test_bpe_round_trips_any_unicode(bpe: Tokenizer, s: str) -> None:
    ids = bpe.encode(s)
    assert all(0 <= i < bpe.vocab_size for i in ids)
    assert bpe.decode(ids) == s


def test_tokenizer_json_round_trip_and_fingerprint(bpe: Tokenizer, char_bundle: DataSplits) -> None:
    assert char_bundle.meta.tokenizer is not None
    char = load_tokenizer(char_bundle.meta.tokenizer)
    sample = "ROMEO:\nBut, soft! what light through yonder window breaks?\n"
    for tok in (char, bpe):
        again = load_tokenizer(tok.to_json())
        assert type(again) is type(tok) and again.vocab_size == tok.vocab_size
        assert again.to_json() == tok.to_json()
        assert again.encode(sample) == tok.encode(sample)
        fp = tokenizer_fingerprint(tok)
        assert (
            fp == tokenizer_fingerprint(again) == hashlib.sha256(tok.to_json().encode()).hexdigest()
        )
    assert tokenizer_fingerprint(char) != tokenizer_fingerprint(bpe)
    # the library's own tokenizer.json is read too
    assert isinstance(bpe, BPETokenizer)
    bare = load_tokenizer(bpe.tokenizer.to_str())
    assert bare.encode(sample) == bpe.encode(sample)
    for bad in ("not json", "[1]", '{"kind": "word"}', '{"kind": "char"}'):
        with pytest.raises(InputError):
            load_tokenizer(bad)


def test_bpe_fit_is_deterministic_and_small_text_works() -> None:
    sample = "the cat sat on the mat; the cat ate the rat.\n" * 20
    a, b = BPETokenizer.fit(sample, 300), BPETokenizer.fit(sample, 300)
    assert a.to_json() == b.to_json() and 256 < a.vocab_size <= 300
    assert a.decode(a.encode("a ☃ the 😀")) == "a ☃ the 😀"  # bytes never seen still encode
    assert len(a.encode("the cat")) < len(b"the cat")


def test_meta_of_text_round_trips(char_bundle: DataSplits) -> None:
    meta = char_bundle.meta
    d = json.loads(json.dumps(meta.to_dict()))
    assert DataMeta.from_dict(d) == meta
    pre = codec_for(meta).preprocessing
    assert pre["codec"] == "text" and pre["context"] == 64 and pre["vocab_size"] == 56
    assert pre["tokenizer"] == meta.tokenizer
    # metadata written before vocab_size/tokenizer existed still loads
    old = {k: v for k, v in d.items() if k not in ("vocab_size", "tokenizer")}
    assert DataMeta.from_dict(old).tokenizer is None


def test_settings_change_the_fingerprint(char_bundle: DataSplits) -> None:
    cfg = DataConfig(name="text-file", path=str(ROMEO), limit=5000, context=32)
    b = load_data(cfg)
    assert b.meta.sizes["train"] == 5000 and b.meta.input_shape == (32,)
    assert b.meta.fingerprint != char_bundle.meta.fingerprint
    with pytest.raises(DataError, match="context"):
        load_data(cfg.model_copy(update={"limit": 10}))


def test_missing_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"input\.txt"):
        load_data(DataConfig(name="tinyshakespeare", data_dir=str(tmp_path)))
    with pytest.raises(DataError, match=r"data\.path: .*nope\.txt does not exist"):
        load_data(DataConfig(name="text-file", path=str(tmp_path / "nope.txt")))


def test_text_file_splits_like_nanogpt(char_bundle: DataSplits, text: str) -> None:
    b = char_bundle
    cut = int(len(text) * 0.9)
    assert b.meta.sizes == {"train": cut, "val": len(text) - cut, "test": len(text) - cut}
    assert b.meta.codec == "text" and b.meta.classes == [] and b.meta.input_shape == (64,)
    assert b.train.x.dtype == torch.int64 and b.train.x.ndim == 1 and b.train.y.numel() == 0
    assert b.meta.tokenizer is not None
    tok = load_tokenizer(b.meta.tokenizer)
    assert tok.decode(b.train.x.tolist()) + tok.decode(b.val.x.tolist()) == text


# ---------------------------------------------------------------------------- windows


def collect(loader: WindowLoader, epochs: int) -> list[tuple[int, int, torch.Tensor, torch.Tensor]]:
    """(epoch, position, x, y) of every batch, driving the loader as the trainer does."""
    out = []
    for _ in range(epochs):
        loader.set_epoch(loader.epoch)
        for x, y in loader:
            out.append((loader.epoch, loader.position - 1, x, y))
    return out


def test_windows_shapes_and_shift() -> None:
    tokens = torch.arange(10_000) * 7  # every window tells where it starts
    loader = WindowLoader(tokens, context=32, batch_size=8, steps_per_epoch=5)
    assert len(loader) == 5
    batches = list(loader)
    assert len(batches) == 5 and loader.epoch == 1 and loader.position == 0
    for x, y in batches:
        assert x.shape == y.shape == (8, 32) and x.dtype == y.dtype == torch.int64
        start = x[:, :1] // 7
        assert torch.equal(x, (start + torch.arange(32)) * 7)  # contiguous slices of the stream
        assert torch.equal(y, x + 7)  # the same windows, one token on
    starts = torch.cat([x[:, 0] for x, _ in batches]) // 7
    assert int(starts.max()) <= 10_000 - 33 and len(set(starts.tolist())) > 30


def test_windows_on_shakespeare(char_bundle: DataSplits) -> None:
    tokens = char_bundle.train.x
    loader = WindowLoader(tokens, context=64, batch_size=4, steps_per_epoch=2, seed=3)
    every = tokens.unfold(0, 65, 1)  # (n - 64, 65): every window with its next token
    for x, y in loader:
        assert torch.equal(x[:, 1:], y[:, :-1])
        for row in range(4):
            window = torch.cat([x[row], y[row, -1:]])
            maybe = every[(every[:, :6] == window[:6]).all(dim=1)]  # a few candidates
            assert bool((maybe == window).all(dim=1).any())


def test_windows_deterministic_and_seeded() -> None:
    tokens = torch.arange(5000)
    a = collect(WindowLoader(tokens, 16, 4, 6, seed=1), 2)
    b = collect(WindowLoader(tokens, 16, 4, 6, seed=1), 2)
    c = collect(WindowLoader(tokens, 16, 4, 6, seed=2), 2)
    assert all(torch.equal(p[2], q[2]) for p, q in zip(a, b, strict=True))
    assert not all(torch.equal(p[2], q[2]) for p, q in zip(a, c, strict=True))
    assert not torch.equal(a[0][2], a[6][2])  # epoch 1 differs from epoch 0


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2), st.integers(0, 6))
def test_exact_resume_at_any_point(epoch: int, position: int) -> None:
    tokens = torch.arange(3000)
    reference = collect(WindowLoader(tokens, 12, 3, 7, seed=5), 4)
    # A run interrupted at (epoch, position): its state goes into a fresh loader.
    run = WindowLoader(tokens, 12, 3, 7, seed=5)
    for _ in range(epoch):
        list(run)
    it = iter(run)
    for _ in range(position):
        next(it)
    state = json.loads(json.dumps(run.state_dict()))  # integers only: the whole state
    resumed = WindowLoader(tokens, 12, 3, 7, seed=5)
    resumed.load_state_dict(state)
    assert (resumed.epoch, resumed.position) == (epoch, position)
    rest = collect(resumed, 4 - epoch)
    expected = reference[epoch * 7 + position :]
    assert [(e, p) for e, p, *_ in rest] == [(e, p) for e, p, *_ in expected]
    for got, want in zip(rest, expected, strict=True):
        assert torch.equal(got[2], want[2]) and torch.equal(got[3], want[3])


def test_ranks_draw_different_windows() -> None:
    tokens = torch.arange(100_000)
    r0 = collect(WindowLoader(tokens, 16, 8, 4, seed=0, rank=0, world_size=2), 1)
    r1 = collect(WindowLoader(tokens, 16, 8, 4, seed=0, rank=1, world_size=2), 1)
    single = collect(WindowLoader(tokens, 16, 8, 4, seed=0), 1)
    for a, b, s in zip(r0, r1, single, strict=True):
        assert not set(a[2][:, 0].tolist()) & set(b[2][:, 0].tolist())
        assert torch.equal(a[2], s[2])  # rank 0 of 2 draws what a single process draws
    again = collect(WindowLoader(tokens, 16, 8, 4, seed=0, rank=1, world_size=2), 1)
    assert all(torch.equal(a[2], b[2]) for a, b in zip(r1, again, strict=True))


def test_window_loader_rejects_bad_input() -> None:
    with pytest.raises(DataError, match="context"):
        WindowLoader(torch.arange(10), context=10, batch_size=1, steps_per_epoch=1)
    with pytest.raises(ValueError, match="1-D"):
        WindowLoader(torch.zeros(4, 4, dtype=torch.long), 2, 1, 1)
    with pytest.raises(ValueError, match="rank"):
        WindowLoader(torch.arange(100), 2, 1, 1, rank=2, world_size=2)


def test_eval_windows_cover_the_stream_once() -> None:
    tokens = torch.arange(1001)
    batches = eval_windows(tokens, context=10, batch_size=32)
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    assert x.shape == (100, 10) and [len(b[0]) for b in batches] == [32, 32, 32, 4]
    assert torch.equal(x.reshape(-1), tokens[:1000]) and torch.equal(y, x + 1)
    again = eval_windows(tokens, context=10, batch_size=32)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again, strict=True))
    assert len(eval_windows(tokens, 10, 32, max_batches=2)) == 2
    shards = [eval_windows(tokens, 10, 32, rank=r, world_size=2) for r in range(2)]
    firsts = [torch.cat([b[0][:, 0] for b in s]).tolist() for s in shards]
    assert sorted(firsts[0] + firsts[1]) == list(range(0, 1000, 10))
    assert eval_windows(torch.arange(5), 10, 4) == []
