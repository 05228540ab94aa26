"""Text for language modelling: the ``tinyshakespeare`` entry, and windows cut from a token stream.

A text dataset's splits hold one int64 token stream each (``Split.x``, ``y`` empty); training
draws random windows of it with :class:`WindowLoader` (nanoGPT's ``get_batch``) and validation
walks non-overlapping windows with :func:`eval_windows`.

>>> tokens = torch.arange(100)
>>> x, y = next(iter(WindowLoader(tokens, context=8, batch_size=4, steps_per_epoch=10)))
>>> x.shape, bool((y == x + 1).all())
(torch.Size([4, 8]), True)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import torch

from deepline.config import DataConfig
from deepline.data.bundle import DataBundle, DataMeta, Split, register_bundle
from deepline.data.catalog import DataFile, DatasetSpec
from deepline.data.fetch import ensure_file
from deepline.data.loaders import ResumablePosition
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
)
TRAIN_FRACTION = 0.9  # nanoGPT's shakespeare_char: data[:int(n * 0.9)] is train


@register_bundle(TINYSHAKESPEARE)
def load_tinyshakespeare(cfg: DataConfig) -> DataBundle:
    """Tiny Shakespeare as token streams: the first 90% of the characters train, the rest val.

    The split is nanoGPT's and fixed (``data.val_fraction`` / ``test_fraction`` do not apply);
    test is the validation stream. The tokenizer (``data.tokenizer``) is fitted on the training
    text only. nanoGPT fits its character vocabulary on the whole text; here the 65 characters
    are the same either way, and fitting on train alone keeps validation honest for any text.
    ``data.limit`` caps the training tokens.
    """
    path = ensure_file(TINYSHAKESPEARE, "input.txt", cfg.data_dir)
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
) -> DataBundle:
    """Token streams of train/val/test text (test defaults to val), with the tokenizer fitted
    on ``train``; meta ``kind="text"``, ``input_shape=(cfg.context,)``."""
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
        kind="text",
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
    return DataBundle(splits["train"], splits["val"], splits["test"], meta)


def encode_stream(tok: Tokenizer, text: str, split: str) -> torch.Tensor:
    """``text`` as a 1-D int64 tensor of token ids."""
    try:
        ids = tok.encode(text)
    except InputError as err:
        raise DataError(f"the {split} text cannot be encoded: {err}") from None
    return torch.tensor(ids, dtype=torch.int64)


# ---------------------------------------------------------------------------- windows


def window_seed(seed: int, epoch: int, position: int, rank: int) -> int:
    """A 64-bit seed that is a pure function of the four integers (no nearby collisions)."""
    digest = hashlib.sha256(f"deepline-windows:{seed}:{epoch}:{position}:{rank}".encode())
    return int.from_bytes(digest.digest()[:8], "little")


class WindowLoader(ResumablePosition):
    """Random windows of a token stream, as nanoGPT's ``get_batch``, with an exact resume.

    Each batch is ``(x, y)``: x int64 (batch_size, context) windows starting at random offsets,
    y the same windows shifted by one token (the targets). The offsets of batch ``position`` of
    ``epoch`` on ``rank`` come from a generator seeded by (seed, epoch, position, rank) alone,
    so a loader restored from ``state_dict`` at any point yields the same batches as one that
    ran there, and each rank of a distributed run draws its own windows (``batch_size`` is the
    per-process batch). An "epoch" is ``steps_per_epoch`` batches.

    It offers what the trainer uses of :class:`~deepline.data.loaders.BatchLoader`.

    >>> loader = WindowLoader(torch.arange(1000), context=16, batch_size=2, steps_per_epoch=3)
    >>> [tuple(x.shape) for x, _ in loader], loader.epoch
    ([(2, 16), (2, 16), (2, 16)], 1)
    """

    def __init__(
        self,
        tokens: torch.Tensor,
        context: int,
        batch_size: int,
        steps_per_epoch: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if tokens.ndim != 1:
            raise ValueError(
                f"WindowLoader wants a 1-D token stream, got shape {tuple(tokens.shape)}"
            )
        if context < 1 or batch_size < 1 or steps_per_epoch < 1:
            raise ValueError(
                f"context, batch_size and steps_per_epoch must be >= 1; got {context}, "
                f"{batch_size}, {steps_per_epoch}"
            )
        if len(tokens) <= context:
            raise DataError(
                f"a stream of {len(tokens)} tokens holds no window of context {context} + 1 "
                "(lower data.context)"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in range(world_size={world_size})")
        self.tokens = tokens.long()
        self.context = context
        self.batch_size = batch_size
        self.steps_per_epoch = steps_per_epoch
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.position = 0  # batches already yielded in this epoch
        # Offsets need no running generator; this one only keeps BatchLoader's interface.
        self.generator = torch.Generator().manual_seed(seed + 1)
        self._span = torch.arange(context + 1)  # (T + 1,)

    def __len__(self) -> int:
        return self.steps_per_epoch

    def batch(self, epoch: int, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch ``position`` of ``epoch`` on this rank: x, y int64 (batch_size, context)."""
        g = torch.Generator().manual_seed(window_seed(self.seed, epoch, position, self.rank))
        starts = torch.randint(len(self.tokens) - self.context, (self.batch_size,), generator=g)
        windows = self.tokens[starts[:, None] + self._span]  # (B, T + 1)
        return windows[:, :-1].contiguous(), windows[:, 1:].contiguous()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(self.position, len(self)):
            x, y = self.batch(self.epoch, i)
            self.position = i + 1
            yield x, y
        self.epoch, self.position = self.epoch + 1, 0


def eval_windows(
    tokens: torch.Tensor,
    context: int,
    batch_size: int,
    max_batches: int | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Non-overlapping windows from the start of the stream, for validation: deterministic.

    Window ``k`` is ``tokens[k*context : (k+1)*context]`` with targets shifted by one; the
    last incomplete window is dropped. Batches of ``batch_size`` windows (the last may be
    smaller), at most ``max_batches`` of them; rank ``r`` of ``world_size`` takes every
    ``world_size``-th window starting at ``r``.

    >>> [tuple(x.shape) for x, _ in eval_windows(torch.arange(100), 8, 5)]
    [(5, 8), (5, 8), (2, 8)]
    """
    if tokens.ndim != 1:
        raise ValueError(f"eval_windows wants a 1-D token stream, got shape {tuple(tokens.shape)}")
    count = max(0, (len(tokens) - 1) // context)  # windows that have all their targets
    starts = torch.arange(count)[rank::world_size] * context
    if max_batches is not None:
        starts = starts[: max_batches * batch_size]
    if len(starts) == 0:
        return []
    span = torch.arange(context + 1)
    batches = []
    for chunk in starts.split(batch_size):
        windows = tokens.long()[chunk[:, None] + span]  # (B, T + 1)
        batches.append((windows[:, :-1].contiguous(), windows[:, 1:].contiguous()))
    return batches
