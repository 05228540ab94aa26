"""The HTTP protocols the server speaks; each module builds one FastAPI router and registers it
in ``PROTOCOLS`` with the path prefixes it answers. Importing this package registers them."""

from deepline.registry import import_modules

import_modules(__name__)  # each protocol module registers its router
