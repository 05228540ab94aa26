"""JSON on the request path: orjson's speed, the standard library's answers.

orjson refuses what Python's ``json`` reads (``NaN`` and ``Infinity`` tokens, integers past 64
bits) and writes non-finite floats as ``null``; for those rare bodies the standard library
reads and writes, so every answer and error stays what it was.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def loads(raw: bytes | str) -> Any:
    """JSON text -> Python values (ValueError, as ``json.loads`` raises, when it is not JSON)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)  # NaN, Infinity, huge integers: read; otherwise its own error


def dumps(doc: Any, finite: bool) -> bytes:
    """Compact JSON; ``finite``: the caller knows every float is finite (else NaN and
    Infinity are written as bare tokens, as ``json.dumps`` does)."""
    if finite:
        return orjson.dumps(doc)
    return json.dumps(doc, separators=(",", ":"), allow_nan=True).encode()
