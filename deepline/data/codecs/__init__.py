"""Input codecs: one per kind of input, each in its own module, found through ``CODECS``.

``codec_for(meta)`` binds a dataset's codec to its statistics (a bundle's meta included).
Adding a codec is a new module with a registered
:class:`InputCodec` subclass (see docs/extending.md).
"""

from __future__ import annotations

from deepline.data.codecs.base import INPUT_NAME, InputCodec
from deepline.data.meta import DataMeta
from deepline.registry import CODECS, import_modules

import_modules(__name__)  # each module registers its codec

__all__ = ["INPUT_NAME", "InputCodec", "codec_for"]


def codec_for(meta: DataMeta) -> InputCodec:
    """The codec of ``meta.codec``, bound to the data's statistics and tokenizer."""
    codec: type[InputCodec] = CODECS.get(meta.codec)
    return codec.from_meta(meta)
