"""The data layer: a catalog of named datasets, file lookup with checksums, readers, and
``load_data`` which turns a ``DataConfig`` into normalised train/val/test tensors: images,
sequences, token ids, or token streams for language models (with their tokenizer).

>>> from deepline.config import DataConfig
>>> from deepline.data import load_data
>>> bundle = load_data(DataConfig(name="digits"))
>>> bundle.train.x.shape[1:], bundle.meta.classes[:3]
(torch.Size([1, 8, 8]), ['0', '1', '2'])
"""

from deepline.data.bundle import DataBundle, DataMeta, Split, load_data, register_bundle
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
from deepline.data.sequences import encode_texts
from deepline.data.text import WindowLoader, eval_windows
from deepline.data.tokenizers import (
    BPETokenizer,
    CharTokenizer,
    Tokenizer,
    load_tokenizer,
    tokenizer_fingerprint,
)

__all__ = [
    "BPETokenizer",
    "CharTokenizer",
    "DataBundle",
    "DataFile",
    "DataMeta",
    "DatasetSpec",
    "RawDataset",
    "RawSplit",
    "Split",
    "Tokenizer",
    "WindowLoader",
    "check_file",
    "dataset_names",
    "encode_texts",
    "ensure_file",
    "ensure_files",
    "eval_windows",
    "get_spec",
    "load_data",
    "load_image",
    "load_tokenizer",
    "register",
    "register_bundle",
    "tokenizer_fingerprint",
]
