"""The data layer: a catalog of named datasets, file lookup with checksums, readers, and
``load_data`` which turns a ``DataConfig`` into normalised train/val/test tensors.

>>> from deepline.config import DataConfig
>>> from deepline.data import load_data
>>> bundle = load_data(DataConfig(name="digits"))
>>> bundle.train.x.shape[1:], bundle.meta.classes[:3]
(torch.Size([1, 8, 8]), ['0', '1', '2'])
"""

from deepline.data.bundle import DataBundle, DataMeta, Split, load_data
from deepline.data.catalog import (
    DataFile,
    DatasetSpec,
    RawDataset,
    RawSplit,
    dataset_names,
    get_spec,
    register,
)
from deepline.data.fetch import check_file, ensure_file, ensure_files
from deepline.data.readers import load_image

__all__ = [
    "DataBundle",
    "DataFile",
    "DataMeta",
    "DatasetSpec",
    "RawDataset",
    "RawSplit",
    "Split",
    "check_file",
    "dataset_names",
    "ensure_file",
    "ensure_files",
    "get_spec",
    "load_data",
    "load_image",
    "register",
]
