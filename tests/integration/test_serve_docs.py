"""/docs and /redoc work offline: every script, stylesheet and icon they load comes from the server
itself (assets packaged by fastapi-offline), none from a CDN."""

import re
from urllib.parse import urlsplit

import httpx
import pytest
from serve_fakes import FakeModel, ThreadServer

from fmnist.serve.app import create_app


@pytest.fixture(scope="module")
def client():
    with ThreadServer(create_app(FakeModel())) as s, httpx.Client(base_url=s.url, timeout=10) as c:
        yield c


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_load_nothing_from_another_host(client, page):
    r = client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert not re.search(r"(https?:)?//[\w.-]+\.\w", html), "the page names another host"
    assets = re.findall(r'<(?:script|link)\b[^>]*\b(?:src|href)="([^"]+)"', html)
    assert any(a.endswith(".js") for a in assets)
    if page == "/docs":
        assert any(a.endswith(".css") for a in assets)
    for asset in assets:
        parts = urlsplit(asset)
        assert not parts.scheme and not parts.netloc and asset.startswith("/"), asset
        got = client.get(asset)
        assert got.status_code == 200 and len(got.content) > 1000, asset
