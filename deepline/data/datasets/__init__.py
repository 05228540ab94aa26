"""The built-in catalog. Importing this package registers every entry (``DATASETS`` does it
on its first lookup); each module holds entries of one kind of data."""

from deepline.data.datasets import (  # noqa: F401  (registers the entries)
    diabetes,
    images,
    sequences,
    text,
)
