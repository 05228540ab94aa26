"""Image datasets: named ones with pinned files, and generic readers for your own images.

Every entry is a reader registered with its :class:`DatasetSpec` and a writer of sample files;
``deepline data list`` shows them all. Checksums are those of the official distributions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepline.config import DataConfig
from deepline.data.catalog import (
    DataFile,
    DataSample,
    DatasetSpec,
    RawDataset,
    RawSplit,
    register,
)
from deepline.data.readers import (
    encode_labels,
    infer_scale,
    read_csv,
    read_idx,
    read_image_folder,
    read_npz,
    to_nchw,
)
from deepline.data.samples import random_images, write_idx
from deepline.errors import DataError

DIGIT_CLASSES = tuple(str(i) for i in range(10))
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
_IDX_NAMES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def _idx_files(base_url: str, checksums: list[tuple[str, int]]) -> tuple[DataFile, ...]:
    return tuple(
        DataFile(name, base_url + name, sha256, size)
        for name, (sha256, size) in zip(_IDX_NAMES, checksums, strict=True)
    )


MNIST = DatasetSpec(
    name="mnist",
    description="handwritten digits 0-9, 28x28 grey",
    licence="CC BY-SA 3.0",
    folder="mnist",
    files=_idx_files(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        [
            ("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422),
            ("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881),
            ("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877),
            ("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542),
        ],
    ),
    classes=DIGIT_CLASSES,
    input_shape=(1, 28, 28),
    splits={"train": 60000, "test": 10000},
    homepage="http://yann.lecun.com/exdb/mnist/",
    citation="LeCun et al., Gradient-based learning applied to document recognition, 1998",
)

FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    description="Zalando clothing images, 10 classes, 28x28 grey",
    licence="MIT",
    folder="fashion-mnist",
    files=_idx_files(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        [
            ("3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26421880),
            ("a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 29515),
            ("346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4422102),
            ("67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 5148),
        ],
    ),
    classes=FASHION_CLASSES,
    input_shape=(1, 28, 28),
    splits={"train": 60000, "test": 10000},
    homepage="https://github.com/zalandoresearch/fashion-mnist",
    citation="Xiao, Rasul, Vollgraf, Fashion-MNIST, arXiv:1708.07747, 2017",
)

BREASTMNIST = DatasetSpec(
    name="breastmnist",
    description="MedMNIST v2 breast ultrasound, malignant vs normal/benign, 28x28 grey",
    licence="CC BY 4.0",
    folder="medmnist",
    files=(
        DataFile(
            "breastmnist.npz",
            "https://zenodo.org/records/10519652/files/breastmnist.npz",
            "3a22d2a4625e7dd8903f0f59030e81a3d0c222bece2e5e10927456cb50efdec1",
            559580,
        ),
    ),
    classes=("malignant", "normal/benign"),
    input_shape=(1, 28, 28),
    splits={"train": 546, "val": 78, "test": 156},
    homepage="https://medmnist.com/",
    citation="Yang et al., MedMNIST v2, Scientific Data 10, 41 (2023); Al-Dhabyani et al. 2020",
)

DIGITS = DatasetSpec(
    name="digits",
    description="scikit-learn's bundled 8x8 handwritten digits; no download, for quick runs",
    licence="CC BY 4.0",
    classes=DIGIT_CLASSES,
    input_shape=(1, 8, 8),
    splits={"all": 1797},
    homepage="https://archive.ics.uci.edu/dataset/80",
    citation="Alpaydin, Kaynak, Optical Recognition of Handwritten Digits, UCI, 1998",
)


# ---------------------------------------------------------------------------- named datasets


def _no_files(folder: Path) -> DataSample:
    return DataSample()


@register(DIGITS, sample=_no_files)
def read_digits(cfg: DataConfig, files: dict[str, Path]) -> RawDataset:
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    x = digits.images.astype(np.float32)[:, None]  # (1797, 1, 8, 8), values 0..16
    return RawDataset(RawSplit(x, digits.target), list(DIGITS.classes), input_scale=16.0)


def _register_idx(spec: DatasetSpec) -> None:
    """MNIST and Fashion-MNIST share a layout: four IDX files, official train and test."""

    def read(cfg: DataConfig, files: dict[str, Path]) -> RawDataset:
        def split(prefix: str) -> RawSplit:
            images = files[f"{prefix}-images-idx3-ubyte.gz"]
            labels = files[f"{prefix}-labels-idx1-ubyte.gz"]
            x, y = read_idx(images), read_idx(labels)
            if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
                raise DataError(f"{images} {x.shape} and {labels} {y.shape} do not match")
            return RawSplit(x[:, None], y)

        return RawDataset(
            split("train"),
            list(spec.classes),
            input_scale=255.0,
            test=split("t10k"),
            files=[str(p) for p in files.values()],
            sources=[f.sha256 for f in spec.files],
        )

    read.__doc__ = f"Read {spec.name}: {spec.description}."
    register(spec, sample=_idx_sample)(read)


def _idx_sample(folder: Path) -> DataSample:
    """40 training and 20 test images of 28x28 in MNIST's four gzipped IDX files."""
    files = {}
    for prefix, n, seed in (("train", 40, 0), ("t10k", 20, 1)):
        x, y = random_images(n, (28, 28), 10, seed)
        files[f"{prefix}-images-idx3-ubyte.gz"] = write_idx(x, folder / f"{prefix}-images.gz")
        labels = y.astype(np.uint8)
        files[f"{prefix}-labels-idx1-ubyte.gz"] = write_idx(labels, folder / f"{prefix}-labels.gz")
    return DataSample(files)


_register_idx(MNIST)
_register_idx(FASHION_MNIST)


def _medmnist_sample(folder: Path) -> DataSample:
    """A MedMNIST-layout npz: train/val/test images (N, 28, 28) and labels (N, 1) in 0..1."""
    arrays = {}
    for split, n, seed in (("train", 20, 0), ("val", 6, 1), ("test", 8, 2)):
        x, y = random_images(n, (28, 28), 2, seed)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = x, y.reshape(-1, 1)
    path = folder / "breastmnist.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return DataSample({"breastmnist.npz": path})


@register(BREASTMNIST, sample=_medmnist_sample)
def read_breastmnist(cfg: DataConfig, files: dict[str, Path]) -> RawDataset:
    path = files["breastmnist.npz"]
    raw = _from_npz(path, sources=[BREASTMNIST.files[0].sha256])
    if len(raw.classes) > len(BREASTMNIST.classes):
        raise DataError(f"{path} has labels beyond 0/1; it is not BreastMNIST")
    raw.classes = list(BREASTMNIST.classes)
    return raw


# ---------------------------------------------------------------------------- generic readers


def _folder_sample(folder: Path) -> DataSample:
    """Two class folders of small RGB PNGs."""
    from PIL import Image

    x, y = random_images(12, (12, 10, 3), 2)
    for i, (image, label) in enumerate(zip(x, y)):
        (folder / f"class{label}").mkdir(exist_ok=True)
        Image.fromarray(image, mode="RGB").save(folder / f"class{label}" / f"{i}.png")
    return DataSample(overrides={"path": str(folder)})


@register(
    DatasetSpec(
        name="image-folder",
        description="your images (data.path): one sub-folder per class, PNG/JPEG/...",
        licence="yours",
        needs_path=True,
    ),
    sample=_folder_sample,
)
def read_image_folder_entry(cfg: DataConfig, files: dict[str, Path]) -> RawDataset:
    path = require_path(cfg, "a folder with one sub-folder of images per class")
    if not path.is_dir():
        raise DataError(
            f"data.path: {path} is not a folder; image-folder wants one sub-folder per class"
        )
    x, y, classes = read_image_folder(path, cfg.channels, cfg.image_size)
    # Images are read in [0, 1]; store 8-bit units so raw pixel inputs at serving time are 0..255.
    return RawDataset(RawSplit(x * 255.0, y), classes, input_scale=255.0, files=[str(path)])


def _npz_sample(folder: Path) -> DataSample:
    x, y = random_images(30, (8, 8), 3)
    np.savez(folder / "arrays.npz", x=x, y=y)
    return DataSample(overrides={"path": str(folder / "arrays.npz")})


@register(
    DatasetSpec(
        name="npz",
        description="your arrays (data.path): x/y, or x_train/y_train[/x_val/x_test...]",
        licence="yours",
        needs_path=True,
    ),
    sample=_npz_sample,
)
def read_npz_entry(cfg: DataConfig, files: dict[str, Path]) -> RawDataset:
    return _from_npz(require_path(cfg, "a .npz file"))


def _csv_sample(folder: Path) -> DataSample:
    x, y = random_images(24, (4, 4), 3)
    rows = [",".join(["label", *[f"p{i}" for i in range(16)]])]
    rows += [",".join([f"c{label}", *map(str, image.reshape(-1))]) for image, label in zip(x, y)]
    (folder / "pixels.csv").write_text("\n".join(rows) + "\n")
    return DataSample(overrides={"path": str(folder / "pixels.csv")})


@register(
    DatasetSpec(
        name="csv",
        description="your CSV (data.path): a label column, the rest square grey pixels",
        licence="yours",
        needs_path=True,
    ),
    sample=_csv_sample,
)
def read_csv_entry(cfg: DataConfig, files: dict[str, Path]) -> RawDataset:
    path = require_path(cfg, "a .csv file")
    pixels, labels = read_csv(path, cfg.label_column)
    y, classes = encode_labels(labels, f"{path} column '{cfg.label_column}'")
    scale = infer_scale(pixels, str(path))
    return RawDataset(RawSplit(pixels, y), classes, input_scale=scale, files=[str(path)])


def require_path(cfg: DataConfig, what: str) -> Path:
    """``data.path``, which must exist; a DataError saying what the reader wants otherwise."""
    if not cfg.path:
        raise DataError(
            f"data.path: the '{cfg.name}' reader needs {what}; set data.path "
            f"(e.g. --set data.path=...)"
        )
    path = Path(cfg.path).expanduser()
    if not path.exists():
        raise DataError(f"data.path: {path} does not exist")
    return path


def _from_npz(path: Path, sources: list[str] | None = None) -> RawDataset:
    """A RawDataset from an npz's splits; labels are encoded over all splits together."""
    arrays = read_npz(path)
    xs = {s: to_nchw(x, f"{path} ({s})") for s, (x, _) in arrays.items()}
    ys = {s: np.asarray(y).reshape(-1) for s, (_, y) in arrays.items()}
    for s in arrays:
        if len(xs[s]) != len(ys[s]):
            raise DataError(
                f"{path}: the {s} split has {len(xs[s])} images but {len(ys[s])} labels"
            )
    encoded, classes = encode_labels(np.concatenate(list(ys.values())), f"{path} labels")
    bounds = np.cumsum([len(y) for y in ys.values()])[:-1]
    splits = {s: RawSplit(xs[s], y) for s, y in zip(arrays, np.split(encoded, bounds), strict=True)}
    return RawDataset(
        splits["train"],
        classes,
        input_scale=infer_scale(xs["train"], str(path)),
        val=splits.get("val"),
        test=splits.get("test"),
        files=[str(path)],
        sources=sources or [],
    )
