"""Detection datasets: images with labelled boxes (BCCD and your own folders in Pascal VOC
layout, KITTI-tiny in KITTI's).

Pictures are resized to ``data.image_size`` (bilinearly with antialiasing, as serving does)
and their boxes scaled with them; targets are padded box rows (``deepline.data.boxes``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from deepline.config import DataConfig
from deepline.data.boxes import Annotation, read_kitti, read_voc, targets
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
from deepline.data.readers import image_dimensions, load_image, read_ids
from deepline.errors import DataError, InputError

HERE = Path(__file__).parent
BCCD_COMMIT = "d272fb14cdff6e473fafeeeba32aba5f560e9e43"
BCCD_RAW = f"https://raw.githubusercontent.com/Shenggan/BCCD_Dataset/{BCCD_COMMIT}/"
KITTI_TINY_ZIP = "https://download.openmmlab.com/mmdetection/data/kitti_tiny.zip"


def read_boxes(
    pairs: Sequence[tuple[Path, Annotation]], size: tuple[int, int], classes: list[str],
    skip: frozenset[str] = frozenset(),
) -> RawSplit:  # fmt: skip
    """(picture, annotation) -> x float32 (N, 3, H, W) in [0, 1] at ``size`` and padded box
    rows scaled to it; a box outside its picture is a DataError naming file and line."""
    x = np.empty((len(pairs), 3, *size), np.float32)
    scales = []
    for i, (picture, annotation) in enumerate(pairs):
        try:
            height, width = image_dimensions(picture)
            x[i] = load_image(picture, 3, size)
        except (OSError, InputError) as err:
            raise DataError(f"{picture} is not a readable image ({err})") from None
        stated = (annotation.width, annotation.height)
        if None not in stated and stated != (width, height):
            raise DataError(
                f"{annotation.path}: <size> says {annotation.width}x{annotation.height} but "
                f"{picture} is {width}x{height}"
            )
        annotation.check(width, height)
        scales.append((size[1] / width, size[0] / height))
    return RawSplit(x, targets([a for _, a in pairs], classes, scales, skip))


# ---------------------------------------------------------------------------- Pascal VOC


def voc_split(
    root: Path, files: dict[str, Path], split: str, size: tuple[int, int], classes: list[str]
) -> RawSplit:
    """The images ``ImageSets/Main/<split>.txt`` lists, from ``JPEGImages`` and ``Annotations``
    under ``root`` (names relative to the dataset folder, as ``files`` holds them)."""
    pairs = []
    listing = files[f"{root}/ImageSets/Main/{split}.txt"]
    for i in read_ids(listing):
        picture, xml = f"{root}/JPEGImages/{i}.jpg", f"{root}/Annotations/{i}.xml"
        if picture not in files or xml not in files:
            raise DataError(f"{listing} names '{i}', which has no JPEG image and XML annotation")
        pairs.append((files[picture], read_voc(files[xml])))
    return read_boxes(pairs, size, classes)


BCCD = DatasetSpec(
    name="bccd",
    description="BCCD blood cells under the microscope: boxes of RBC, WBC and Platelets "
    "(Pascal VOC)",
    licence="MIT",
    folder="bccd",
    files=manifest_files(HERE / "bccd.sha256", lambda name: (BCCD_RAW + name, "")),
    classes=("RBC", "WBC", "Platelets"),
    input_shape=(3, 240, 320),
    splits={"train": 205, "val": 87, "test": 72},
    homepage="https://github.com/Shenggan/BCCD_Dataset",
    citation="Shenggan, BCCD Dataset (2017), https://github.com/Shenggan/BCCD_Dataset",
    task="detection",
)


def voc_sample(folder: Path, root: str = "BCCD") -> dict[str, Path]:
    """Eight 40x32 pictures with one to three bright boxes each, in VOC layout."""
    files: dict[str, Path] = {}
    rng = np.random.default_rng(0)
    names = ("RBC", "WBC", "Platelets")
    ids = [f"img{i}" for i in range(8)]
    for n, i in enumerate(ids):
        picture = rng.integers(0, 60, (32, 40, 3), dtype=np.uint8)
        objects = []
        for k in range(1 + n % 3):
            x1, y1 = 2 + 12 * k, 4 + 2 * n
            picture[y1 : y1 + 8, x1 : x1 + 9] = 200 + 20 * k
            objects.append(
                f"<object><name>{names[k]}</name><difficult>0</difficult><bndbox><xmin>{x1}"
                f"</xmin><ymin>{y1}</ymin><xmax>{x1 + 9}</xmax><ymax>{y1 + 8}</ymax></bndbox>"
                "</object>"
            )
        xml = ("<annotation><size><width>40</width><height>32</height><depth>3</depth></size>"
               + "".join(objects) + "</annotation>")  # fmt: skip
        for name, write in (
            (f"{root}/JPEGImages/{i}.jpg", None),
            (f"{root}/Annotations/{i}.xml", xml),
        ):
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if write is None:
                Image.fromarray(picture).save(path, quality=95)
            else:
                path.write_text(write, encoding="utf-8")
            files[name] = path
    for split, chosen in (("train", ids[:4]), ("val", ids[4:6]), ("test", ids[6:])):
        path = folder / root / "ImageSets" / "Main" / f"{split}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(chosen) + "\n", encoding="utf-8")
        files[f"{root}/ImageSets/Main/{split}.txt"] = path
    return files


@register(BCCD, sample=lambda folder: DataSample(voc_sample(folder), {"image_size": (32, 32)}))
def read_bccd(cfg: DataConfig, files: dict[str, Path]) -> RawDataset:
    """The official train/val/test lists (205/87/72); two boxes of no extent are dropped."""
    size, classes = configured_size(cfg, (240, 320)), list(BCCD.classes)
    train, val, test = (voc_split(Path("BCCD"), files, s, size, classes)
                        for s in ("train", "val", "test"))  # fmt: skip
    return RawDataset(train, classes, 1.0, val=val, test=test,
                      files=[str(files["BCCD/ImageSets/Main/train.txt"].parents[2])],
                      sources=[manifest_digest(HERE / "bccd.sha256")])  # fmt: skip


def _voc_folder_sample(folder: Path) -> DataSample:
    voc_sample(folder, root="mine")
    return DataSample(overrides={"path": str(folder / "mine"), "image_size": (32, 32)})


@register(
    DatasetSpec(
        name="voc",
        description="your boxes in Pascal VOC layout (data.path): JPEGImages/, Annotations/ "
        "and ImageSets/Main/{train,val,test}.txt; classes in order of first appearance",
        licence="yours",
        needs_path=True,
        task="detection",
    ),
    sample=_voc_folder_sample,
)
def read_voc_folder(cfg: DataConfig, files: dict[str, Path]) -> RawDataset:
    """The lists ``ImageSets/Main`` holds: train (required), val and test (carved from train
    when missing, by ``data.val_fraction`` and ``data.test_fraction``)."""
    root = require_path(cfg, "a Pascal VOC folder (JPEGImages/, Annotations/, ImageSets/Main/)")
    found = {str(p.relative_to(root.parent)): p for p in root.rglob("*") if p.is_file()}
    name = root.name
    if f"{name}/ImageSets/Main/train.txt" not in found:
        raise DataError(f"data.path: {root} has no ImageSets/Main/train.txt")
    classes: list[str] = []
    for path in sorted(p for k, p in found.items() if k.startswith(f"{name}/Annotations/")):
        classes += [c for c in read_voc(path).names if c not in classes]
    size = configured_size(cfg, (256, 256))
    splits = {s: voc_split(Path(name), found, s, size, classes)
              for s in ("train", "val", "test")
              if f"{name}/ImageSets/Main/{s}.txt" in found}  # fmt: skip
    return RawDataset(splits["train"], classes, 1.0, val=splits.get("val"),
                      test=splits.get("test"), files=[str(root)])  # fmt: skip


# ---------------------------------------------------------------------------- KITTI

KITTI_CLASSES = ("Car", "Pedestrian", "Cyclist")  # as the MMDetection tutorial trains
KITTI_TINY = DatasetSpec(
    name="kitti-tiny",
    description="KITTI-tiny driving scenes: boxes of cars, pedestrians and cyclists "
    "(non-commercial use only)",
    licence="CC BY-NC-SA 3.0 (non-commercial)",
    folder="kitti-tiny",
    files=manifest_files(HERE / "kitti-tiny.sha256", lambda name: (KITTI_TINY_ZIP, name)),
    classes=KITTI_CLASSES,
    input_shape=(3, 192, 640),
    splits={"train": 50, "test": 25},
    homepage="https://github.com/open-mmlab/mmdetection",
    citation="Geiger, Lenz, Urtasun, Are we ready for Autonomous Driving?, CVPR 2012",
    task="detection",
)
KITTI_SKIP = frozenset({"Van", "Truck", "Tram", "Misc", "Person_sitting"})


def _kitti_sample(folder: Path) -> DataSample:
    files: dict[str, Path] = {}
    rng = np.random.default_rng(2)
    for n in range(6):
        stem = f"kitti_tiny/training/image_2/{n:06d}.jpeg"
        picture = rng.integers(0, 60, (24, 72, 3), dtype=np.uint8)
        picture[6:16, 10 + 5 * n : 22 + 5 * n] = 220
        path = folder / stem
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(picture).save(path, quality=95)
        files[stem] = path
        label = folder / f"kitti_tiny/training/label_2/{n:06d}.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text(
            f"{KITTI_CLASSES[n % 3]} 0.00 0 0.0 {10 + 5 * n} 6 {22 + 5 * n} 16 1 1 1 1 1 1 0\n"
            "DontCare -1 -1 -10 60 2 70 9 -1 -1 -1 -1000 -1000 -1000 -10\n"
            "Van 0.00 0 0.0 40 10 50 20 1 1 1 1 1 1 0\n",
            encoding="utf-8",
        )
        files[f"kitti_tiny/training/label_2/{n:06d}.txt"] = label
    return DataSample(files, {"image_size": (16, 64), "val_fraction": 0.25})


@register(KITTI_TINY, sample=_kitti_sample)
def read_kitti_tiny(cfg: DataConfig, files: dict[str, Path]) -> RawDataset:
    """Frames 0-49 for training (validation carved by ``data.val_fraction``), 50-74 as the
    test split, as the MMDetection tutorial splits them; Car, Pedestrian and Cyclist are
    learnt, DontCare regions ignored, other types left out."""
    size, classes = configured_size(cfg, (192, 640)), list(KITTI_CLASSES)
    frames = sorted(k.rsplit("/", 1)[1].split(".")[0] for k in files if "/image_2/" in k)
    pairs = [
        (files[f"kitti_tiny/training/image_2/{f}.jpeg"],
         read_kitti(files[f"kitti_tiny/training/label_2/{f}.txt"]))
        for f in frames
    ]  # fmt: skip
    cut = 50 if len(pairs) == 75 else len(pairs) * 2 // 3  # the sample: a third for testing
    train = read_boxes(pairs[:cut], size, classes, KITTI_SKIP)
    test = read_boxes(pairs[cut:], size, classes, KITTI_SKIP)
    return RawDataset(train, classes, 1.0, test=test,
                      files=[str(pairs[0][0].parents[2])],
                      sources=[manifest_digest(HERE / "kitti-tiny.sha256")])  # fmt: skip
