"""The built-in catalog. Importing this package registers every entry (``DATASETS`` does it
on its first lookup); each module holds entries of one kind of data."""

from deepline.registry import import_modules

import_modules(__name__)  # each module registers its entries
