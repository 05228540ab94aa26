"""The data layer: a catalog of named datasets, file lookup with checksums, readers, input
codecs, and ``load_data`` which turns a ``DataConfig`` into normalised train/val/test tensors:
images, sequences, token ids, token streams for language models, or rows of named features.

>>> from deepline.config import DataConfig
>>> from deepline.data import load_data
>>> data = load_data(DataConfig(name="digits"))
>>> data.train.x.shape[1:], data.meta.classes[:3]
(torch.Size([1, 8, 8]), ['0', '1', '2'])
"""

from deepline.data.catalog import (
    DataFile,
    DataSample,
    DatasetSpec,
    RawDataset,
    RawSplit,
    dataset_names,
    get_spec,
    register,
)
from deepline.data.fetch import check_file, ensure_file, ensure_files
from deepline.data.load import load_data, read_data
from deepline.data.loaders import WindowLoader, eval_windows
from deepline.data.meta import DataMeta, DataSplits, Split
from deepline.data.readers import load_image
from deepline.data.tokenizers import (
    BPETokenizer,
    CharTokenizer,
    Tokenizer,
    encode_texts,
    load_tokenizer,
    tokenizer_fingerprint,
)

__all__ = [
    "BPETokenizer",
    "CharTokenizer",
    "DataFile",
    "DataMeta",
    "DataSample",
    "DataSplits",
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
    "read_data",
    "register",
    "tokenizer_fingerprint",
]
