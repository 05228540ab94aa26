"""Segmentation data: masks read and resized as stated, kept aligned with their images by
every augmentation, and bad pairs refused naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deepline.config import AugmentConfig, DataConfig
from deepline.data import load_data
from deepline.data.datasets.masks import read_mask
from deepline.data.loaders import BatchLoader
from deepline.data.transforms import BatchAugment
from deepline.errors import DataError


def boxes(n: int, size: int = 24, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images with one bright rectangle each (3 channels) and the rectangle's mask."""
    rng = np.random.default_rng(seed)
    x = torch.zeros(n, 3, size, size)
    y = torch.zeros(n, size, size, dtype=torch.uint8)
    for i in range(n):
        top, left = rng.integers(0, size - 8, 2)
        h, w = rng.integers(3, 8, 2)
        x[i, :, top : top + h, left : left + w] = 1.0
        y[i, top : top + h, left : left + w] = 1
    return x, y


@pytest.mark.parametrize(
    "augment",
    [AugmentConfig(shift=5), AugmentConfig(flip=True), AugmentConfig(vflip=True),
     AugmentConfig(shift=7, flip=True, vflip=True)],
)  # fmt: skip
def test_every_augmentation_moves_masks_with_their_images(augment: AugmentConfig) -> None:
    x, y = boxes(64)
    loader = BatchLoader(x, y, 16, shuffle=True, augment=BatchAugment(augment),
                         geometry="masks")  # fmt: skip
    moved = 0
    for batch_x, batch_y in loader:
        assert batch_y.dtype == torch.uint8
        assert torch.equal((batch_x[:, 0] > 0.5).to(torch.uint8), batch_y)  # pixel for pixel
        assert torch.equal(batch_x[:, 0], batch_x[:, 2])  # channels moved alike
        moved += int((batch_y != y[: len(batch_y)]).any())
    assert moved  # the augmentation did change something


def test_rotation_and_zoom_move_masks_with_their_images() -> None:
    x, y = boxes(64)
    augment = BatchAugment(AugmentConfig(rotate=45, scale=0.3))
    moved_x, moved_y = augment(x, torch.Generator().manual_seed(0), y, "masks")
    assert moved_y.dtype == torch.uint8 and not torch.equal(moved_y, y)
    assert torch.equal(moved_x[:, 0], moved_x[:, 2])
    # the mask is warped by nearest neighbour, the image by interpolation: they may differ
    # only on the object's edge
    drawn = (moved_x[:, 0] > 0.5).to(torch.uint8)
    differ = (drawn != moved_y).sum().item()
    assert differ <= 0.1 * moved_y.sum().item(), (differ, moved_y.sum().item())
    assert moved_y.sum() > 0.6 * y.sum()  # zoomed in or out, the objects stay


def test_masks_are_thresholded_then_resized_by_area(tmp_path: Path) -> None:
    mask = np.zeros((40, 40), np.uint8)
    mask[:20] = 128  # > 127: foreground
    mask[20:, :10] = 127  # not
    Image.fromarray(mask).save(tmp_path / "m.png")
    small = read_mask(tmp_path / "m.png", (4, 4))
    assert small.tolist() == [[1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]]


def test_zero_one_masks_are_read_as_such(tmp_path: Path) -> None:
    mask = np.zeros((8, 8), np.uint8)
    mask[:4] = 1  # class indices, not 0/255
    Image.fromarray(mask).save(tmp_path / "m.png")
    assert read_mask(tmp_path / "m.png", (2, 2)).tolist() == [[1, 1], [0, 0]]


def test_a_turned_phone_photo_is_read_upright(tmp_path: Path) -> None:
    """EXIF orientation 6 (turned 90 degrees): read as people (and browsers) see it."""
    from deepline.data.readers import image_dimensions, load_image

    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :5] = 255  # a bright left edge as stored
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "p.jpg", exif=exif, quality=95)
    assert image_dimensions(tmp_path / "p.jpg") == (40, 20)
    upright = load_image(tmp_path / "p.jpg", 1, (40, 20))[0]
    assert upright[:5].mean() > 0.8 and upright[-5:].mean() < 0.2  # the edge is now on top


def pairs(folder: Path, n: int = 5, mask_size: tuple[int, int] = (20, 24)) -> Path:
    for kind in ("images", "masks"):
        (folder / kind).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((20, 24, 3), 25 * i, np.uint8)).save(folder / "images" / f"{i}.png")
        Image.fromarray(np.zeros(mask_size, np.uint8)).save(folder / "masks" / f"{i}.png")
    return folder


def test_a_mask_of_another_size_is_refused_naming_both_files(tmp_path: Path) -> None:
    folder = pairs(tmp_path / "d", mask_size=(10, 24))
    with pytest.raises(DataError, match=r"masks/0\.png is 24x10 pixels but its image .*0\.png"):
        load_data(DataConfig(name="image-masks", path=str(folder), image_size=(16, 16)))


def test_an_image_without_its_mask_is_refused(tmp_path: Path) -> None:
    folder = pairs(tmp_path / "d")
    (folder / "masks" / "3.png").unlink()
    with pytest.raises(DataError, match=r"1 images have no mask .* e\.g\. 3\.png"):
        load_data(DataConfig(name="image-masks", path=str(folder), image_size=(16, 16)))


def test_pairs_split_into_train_val_test(tmp_path: Path) -> None:
    folder = pairs(tmp_path / "d", n=10)
    config = DataConfig(name="image-masks", path=str(folder), image_size=(16, 16),
                        val_fraction=0.2, test_fraction=0.2)  # fmt: skip
    data = load_data(config)
    assert data.meta.sizes == {"train": 6, "val": 2, "test": 2}
    assert data.train.x.shape == (6, 3, 16, 16) and data.train.y.shape == (6, 16, 16)
    assert data.meta.classes == ["background", "foreground"]
