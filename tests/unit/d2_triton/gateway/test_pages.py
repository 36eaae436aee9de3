"""The docs and the page load nothing from outside the gateway, and are where the mode says."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from d2_triton.gateway.app import create_app
from d2_triton.gateway.pages import PAGE_DIR
from d2_triton.gateway.settings import GatewaySettings

# An absolute URL (scheme or protocol-relative) anywhere in a page or its files.
ABSOLUTE_URL = re.compile(r"""(?:https?:)?//[\w.-]+\.\w""")
# What the HTML asks the browser to load: src, href.
REFERENCES = re.compile(r"""(?:src|href)=["']([^"']+)["']""")


def client(**settings) -> TestClient:
    return TestClient(create_app(GatewaySettings(triton_port=1, **settings)))


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_the_api_docs_load_their_files_from_the_gateway(path):
    with client(mode="debug") as gateway:
        html = gateway.get(path).text
        references = REFERENCES.findall(html) + re.findall(r"url: ?'([^']+)'", html)
        assert references and not ABSOLUTE_URL.search(html), html
        for reference in references:
            assert gateway.get(reference).status_code == 200, reference


def test_the_page_and_its_files_come_from_the_gateway_and_name_no_other_host():
    with client(mode="debug") as gateway:
        html = gateway.get("/").text
        references = REFERENCES.findall(html)
        assert {"page/page.js", "page/page.css", "page/favicon.svg"} <= set(references)
    for path in PAGE_DIR.iterdir():
        text = re.sub(r'xmlns="[^"]*"', "", path.read_text())  # a name, never fetched
        assert not ABSOLUTE_URL.search(text), path.name


def test_the_page_and_docs_are_off_in_production_unless_ui_is_set():
    with client() as gateway:
        assert [gateway.get(path).status_code for path in ("/", "/docs")] == [404, 404]
        assert gateway.get("/openapi.json").status_code == 200
    with client(ui=True) as gateway:
        assert gateway.get("/").status_code == 200
        assert gateway.get("/page/page.js").status_code == 200
        assert gateway.get("/docs").status_code == 404


def test_the_page_needs_no_api_key_but_the_api_still_does():
    with client(mode="debug", api_key="secret") as gateway:
        assert gateway.get("/").status_code == 200
        assert gateway.get("/page/page.js").status_code == 200
        assert gateway.get("/v1/models").status_code == 401
