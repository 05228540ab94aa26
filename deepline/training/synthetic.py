"""GAN augmentation (``data.synthetic``): a conditional generator's images, labelled with the
class each was asked to be, added to the training split.

The generator is a bundle of the ``image_generation`` task trained on the same images and
classes; its images in [-1, 1] are normalised with the training data's own statistics, so the
model sees them as it sees real ones. Validation and test splits stay real.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from deepline.config import SyntheticConfig
from deepline.data.meta import DataSplits, Split
from deepline.errors import ConfigError, DeeplineError
from deepline.tasks.latents import LatentCodec
from deepline.tasks.saved import bundle_model

BATCH = 500


def with_synthetic(data: DataSplits, config: SyntheticConfig) -> DataSplits:
    """``data`` with ``config.per_class`` generated images of each class appended to its
    training split (``meta.sizes["synthetic"]`` says how many)."""
    where = f"data.synthetic.generator={config.generator!r}"
    try:
        generator, task = bundle_model(config.generator)
    except DeeplineError as err:
        raise ConfigError(f"{where}: {err}") from None
    classes, codec = list(data.meta.classes), task.codec
    if not isinstance(codec, LatentCodec) or codec.classes != classes:
        raise ConfigError(
            f"{where}: not a conditional image generator of this data's classes {classes} "
            f"(it is a {task.name} model of {task.meta.classes})"
        )
    if tuple(task.meta.input_shape) != tuple(data.meta.input_shape):
        raise ConfigError(
            f"{where}: it makes {list(task.meta.input_shape)} images, the data holds "
            f"{list(data.meta.input_shape)}"
        )
    n = config.per_class * len(classes)
    labels = np.repeat(np.arange(len(classes)), config.per_class)
    latents = torch.from_numpy(codec.latents(range(config.seed, config.seed + n), labels.tolist()))
    mean = torch.tensor(data.meta.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.meta.std).view(1, -1, 1, 1)
    with torch.no_grad():
        images = torch.cat([generator(latents[i : i + BATCH]) for i in range(0, n, BATCH)])
    x = (((images + 1) / 2).clamp(0, 1) - mean) / std
    train = Split(
        torch.cat([data.train.x, x.to(data.train.x.dtype)]),
        torch.cat([data.train.y, torch.from_numpy(labels).to(data.train.y.dtype)]),
    )
    meta = dataclasses.replace(data.meta, sizes={**data.meta.sizes, "synthetic": n})
    return dataclasses.replace(data, train=train, meta=meta)
