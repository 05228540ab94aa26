"""The HTTP protocols the server speaks; each module builds one FastAPI router and registers it
in ``PROTOCOLS`` with the path prefixes it answers. Importing this package registers them."""

from deepline.serve.protocols import deepline_api, kserve, page, tfserving  # noqa: F401
