"""The web page at ``GET /``: pick a model, draw a digit (or upload an image, type a text or a
prompt) and see the answer with its latency.

The page is one self-contained HTML document: its script and style are inlined, so a server
with a bearer token serves the whole page to ``/?token=...`` (the only route that takes the
token from the query) and the script sends the token as a header on its API calls. The
Content-Security-Policy allows exactly those two inlined blocks (by hash) and requests to this
server, nothing else.
"""

from __future__ import annotations

import base64
import hashlib
from functools import cache
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from deepline.registry import PROTOCOLS

router = APIRouter()
PROTOCOLS.register("page", prefixes=("/",), order=90)(router)


def _read(name: str) -> str:
    return files("deepline.serve").joinpath("page").joinpath(name).read_text(encoding="utf-8")


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@cache
def page() -> tuple[str, dict[str, str]]:
    """The page's HTML and its security headers (built once, from the packaged files)."""
    script, style = _read("page.js"), _read("page.css")
    html = (
        _read("index.html")
        .replace("<!-- page.css -->", f"<style>{style}</style>")
        .replace("<!-- page.js -->", f"<script>{script}</script>")
    )
    policy = "; ".join(
        [
            "default-src 'none'",
            f"script-src {_sha256(script)}",
            f"style-src {_sha256(style)}",
            "img-src 'self' data:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )
    headers = {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",  # the address may hold ?token=
        "Cache-Control": "no-store",
    }
    return html, headers


@router.get("/", include_in_schema=False, response_class=HTMLResponse)
async def index() -> HTMLResponse:
    html, headers = page()
    return HTMLResponse(html, headers=headers)
