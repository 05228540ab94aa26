"""The web page at ``/`` without a browser: a self-contained document with a strict policy, and
the token rules of a protected server (the page in Chromium: test_page.py)."""

from __future__ import annotations

import re

import httpx

from deepline.serve.server import BackgroundServer
from tests.serve.conftest import TOKEN


def test_page_is_self_contained_with_a_strict_policy(client: httpx.Client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["x-content-type-options"] == "nosniff"
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert re.search(r"script-src 'sha256-[A-Za-z0-9+/=]+'(;|$)", policy)
    assert "unsafe" not in policy
    html = response.text
    assert not re.search(r"""(src|href|url)\s*[=(]\s*["']?(https?:)?//""", html)
    for element_id in ("model", "version", "canvas", "predict", "result", "top-class", "latency"):
        assert f'id="{element_id}"' in html
    assert "/" not in client.get("/openapi.json").json()["paths"]


def test_page_needs_the_token_on_a_tokened_server(tokened: BackgroundServer) -> None:
    assert httpx.get(tokened.url + "/").status_code == 401
    assert httpx.get(tokened.url + "/?token=wrong").status_code == 401
    assert httpx.get(f"{tokened.url}/?token={TOKEN}").status_code == 200
    # the page's own API calls need the header: the query token opens only the page
    assert httpx.get(f"{tokened.url}/models?token={TOKEN}").status_code == 401


# -- in the browser -------------------------------------------------------------------------
