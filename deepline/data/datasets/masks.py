"""Segmentation datasets: images with a mask each (Kvasir-SEG, and your own folders of pairs).

A mask is an image of the same size as its picture; a pixel brighter than 127 (of 255) is
foreground, as Kvasir-SEG's JPEG masks are read. Pictures and masks are resized to
``data.image_size`` together: pictures bilinearly with antialiasing (as serving does), masks
as the share of foreground under each new pixel, then thresholded at one half.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from deepline.config import DataConfig
from deepline.data.catalog import (
    DataSample,
    DatasetSpec,
    RawDataset,
    RawSplit,
    configured_size,
    manifest_digest,
    manifest_files,
    register,
)
from deepline.data.datasets.images import require_path
from deepline.data.readers import (
    IMAGE_SUFFIXES,
    image_dimensions,
    load_image,
    read_ids,
    resize,
    upright,
)
from deepline.errors import DataError, InputError

MASK_CLASSES = ("background", "foreground")
DEFAULT_SIZE = (128, 128)  # pixels (H, W) when data.image_size is not set
MANIFEST = Path(__file__).with_name("kvasir-seg.sha256")  # "sha256 size name" per file
KVASIR_ZIP = "https://datasets.simula.no/downloads/kvasir-seg.zip"
KVASIR_SPLITS = (
    "https://raw.githubusercontent.com/DebeshJha/2020-MediaEval-Medico-polyp-segmentation/"
    "master/kvasir-seg-train-val/"
)


def _kvasir_source(name: str) -> tuple[str, str]:
    """The images and masks are members of the official zip; the split lists come from the
    authors' repository."""
    if name.startswith("Data-split/"):
        return KVASIR_SPLITS + name.split("/")[1], ""
    return KVASIR_ZIP, name


KVASIR_SEG = DatasetSpec(
    name="kvasir-seg",
    description="Kvasir-SEG colonoscopy polyps: RGB frames with polyp masks (research and "
    "education only)",
    licence="research and education only; commercial use needs permission",
    folder="kvasir-seg",
    files=manifest_files(MANIFEST, _kvasir_source),
    classes=("background", "polyp"),
    input_shape=(3, *DEFAULT_SIZE),
    splits={"train": 880, "test": 120},
    homepage="https://datasets.simula.no/kvasir-seg/",
    citation="Jha et al., Kvasir-SEG: A Segmented Polyp Dataset, MMM 2020",
    task="segmentation",
)


def read_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    """A mask file -> uint8 (H, W) in {0, 1} at ``size``: > 127 is foreground (a mask whose
    brightest pixel is 1 is read as 0/1), then the share of foreground under each resized
    pixel, thresholded at one half."""
    try:
        with Image.open(path) as img:
            grey = np.asarray(upright(img).convert("L"))
    except (OSError, ValueError, SyntaxError) as err:
        raise DataError(f"mask {path} is not a readable image ({err})") from None
    foreground = grey > (0 if grey.max(initial=0) == 1 else 127)
    share = resize(torch.from_numpy(foreground.astype(np.float32))[None, None], size)
    return (share[0, 0] >= 0.5).numpy().astype(np.uint8)


def dimensions(path: Path) -> tuple[int, int]:
    """(H, W) of an image file as people see it; a DataError naming it when unreadable."""
    try:
        return image_dimensions(path)
    except (OSError, ValueError, SyntaxError) as err:
        raise DataError(f"{path} is not a readable image ({err})") from None


def read_pairs(
    pairs: Sequence[tuple[Path, Path]], size: tuple[int, int], channels: int = 3
) -> RawSplit:
    """(picture, mask) files -> x float32 (N, channels, H, W) in [0, 1] and y uint8 masks."""
    x = np.empty((len(pairs), channels, *size), np.float32)
    y = np.empty((len(pairs), *size), np.uint8)
    for i, (picture, mask) in enumerate(pairs):
        (ph, pw), (mh, mw) = dimensions(picture), dimensions(mask)
        if (ph, pw) != (mh, mw):
            raise DataError(
                f"mask {mask} is {mw}x{mh} pixels but its image {picture} is {pw}x{ph}: a "
                "mask must have its image's size"
            )
        try:
            x[i] = load_image(picture, channels, size)
        except InputError as err:
            raise DataError(str(err)) from None
        y[i] = read_mask(mask, size)
    return RawSplit(x, y)


def _kvasir_sample(folder: Path) -> DataSample:
    """Six small pictures with a bright square each, their masks, and split lists."""
    files: dict[str, Path] = {}
    rng = np.random.default_rng(0)
    ids = [f"sample{i}" for i in range(6)]
    for i, name in enumerate(ids):
        h, w = 20 + i, 24
        picture = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
        mask = np.zeros((h, w), np.uint8)
        mask[4 : 10 + i, 6:14] = 255
        picture[mask > 0] = 220
        for kind, array in (("images", picture), ("masks", np.stack([mask] * 3, -1))):
            path = folder / "Kvasir-SEG" / kind / f"{name}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(path, quality=95)
            files[f"Kvasir-SEG/{kind}/{name}.jpg"] = path
    for split, chosen in (("train", ids[:4]), ("val", ids[4:])):
        path = folder / "Data-split" / f"{split}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(chosen) + "\n", encoding="utf-8")
        files[f"Data-split/{split}.txt"] = path
    return DataSample(files, overrides={"image_size": (16, 16), "val_fraction": 0.25})


@register(KVASIR_SEG, sample=_kvasir_sample)
def read_kvasir_seg(cfg: DataConfig, files: dict[str, Path]) -> RawDataset:
    """The official split: ``train.txt`` (880) for training, from which validation is carved
    (``data.val_fraction``), and ``val.txt`` (120) held out as the test split."""
    size = configured_size(cfg, DEFAULT_SIZE)

    def split(name: str) -> RawSplit:
        pairs = []
        for i in read_ids(files[f"Data-split/{name}.txt"]):
            picture, mask = f"Kvasir-SEG/images/{i}.jpg", f"Kvasir-SEG/masks/{i}.jpg"
            if picture not in files or mask not in files:
                raise DataError(f"Data-split/{name}.txt names '{i}', which has no image and mask")
            pairs.append((files[picture], files[mask]))
        return read_pairs(pairs, size)

    listing = files["Data-split/train.txt"].parent.parent
    return RawDataset(
        split("train"), list(KVASIR_SEG.classes), 1.0, test=split("val"),
        files=[str(listing)], sources=[manifest_digest(MANIFEST)],
    )  # fmt: skip


# ---------------------------------------------------------------------------- your own pairs


def _folder_pairs_sample(folder: Path) -> DataSample:
    rng = np.random.default_rng(1)
    for i in range(6):
        picture = rng.integers(0, 80, (18, 22), dtype=np.uint8)
        mask = np.zeros((18, 22), np.uint8)
        mask[3 : 9 + i, 5:12] = 255
        picture[mask > 0] = 200
        (folder / "images").mkdir(exist_ok=True)
        (folder / "masks").mkdir(exist_ok=True)
        Image.fromarray(picture).save(folder / "images" / f"p{i}.png")
        Image.fromarray(mask).save(folder / "masks" / f"p{i}.png")
    return DataSample(overrides={"path": str(folder), "image_size": (16, 16), "channels": 1})


@register(
    DatasetSpec(
        name="image-masks",
        description="your segmentation pairs (data.path): images/ and masks/ with the same "
        "file names; mask pixels > 127 are foreground",
        licence="yours",
        classes=MASK_CLASSES,
        needs_path=True,
        task="segmentation",
    ),
    sample=_folder_pairs_sample,
)
def read_image_masks(cfg: DataConfig, files: dict[str, Path]) -> RawDataset:
    """Pairs matched by file stem; validation and test are carved from them
    (``data.val_fraction``, ``data.test_fraction``)."""
    root = require_path(cfg, "a folder holding images/ and masks/")
    folders = {kind: root / kind for kind in ("images", "masks")}
    for kind, folder in folders.items():
        if not folder.is_dir():
            raise DataError(f"data.path: {root} has no {kind}/ folder (it needs images/, masks/)")
    masks = {p.stem: p for p in folders["masks"].iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    pictures = sorted(p for p in folders["images"].iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    unmatched = [p.name for p in pictures if p.stem not in masks]
    if unmatched:
        raise DataError(
            f"{folders['images']}: {len(unmatched)} images have no mask of the same name in "
            f"{folders['masks']}, e.g. {unmatched[0]}"
        )
    if not pictures:
        raise DataError(f"{folders['images']} holds no images")
    channels = cfg.channels or 3
    split = read_pairs(
        [(p, masks[p.stem]) for p in pictures], configured_size(cfg, DEFAULT_SIZE), channels
    )
    return RawDataset(split, list(MASK_CLASSES), 1.0, files=[str(root)])
