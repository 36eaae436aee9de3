"""The gateway's pages for people: the API docs, and a page to try a model at ``/``.

Both load nothing from outside the gateway, so they work on a machine without internet
(FastAPI's own ``/docs`` fetches Swagger UI from a CDN and is blank there).  Swagger UI's
and ReDoc's files come from the ``fastapi-offline-docs`` package, which ships them; the page
is three small files of this package (``page/``) that use only the public API.  A
Content-Security-Policy holds each page to the gateway's own origin: ReDoc's bundle would
otherwise fetch its vendor's logo from the vendor's CDN.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline_docs
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_ASSETS_DIR = Path(fastapi_offline_docs.__file__).parent / "static"
PAGE_DIR = Path(__file__).parent / "page"
DOCS_ASSETS = "/docs-assets"
PAGE_ASSETS = "/page"
FAVICON = f"{PAGE_ASSETS}/favicon.svg"
# Swagger UI and ReDoc start from inline scripts and styles (FastAPI's HTML); ReDoc's search
# runs in a blob worker.  The page needs nothing inline.
DOCS_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:"
)
PAGE_POLICY = "default-src 'self'; img-src 'self' data: blob:"


def add_docs(app: FastAPI) -> None:
    """Swagger UI at ``/docs`` and ReDoc at ``/redoc``, with their files served from here."""
    app.mount(DOCS_ASSETS, StaticFiles(directory=DOCS_ASSETS_DIR), name="docs-assets")
    add_page_assets(app)

    def page(root: str, name: str) -> dict[str, str]:
        return {"openapi_url": f"{root}{app.openapi_url}", "title": f"{app.title} - {name}"}

    def swagger_ui(root: str) -> HTMLResponse:
        assets = f"{root}{DOCS_ASSETS}"
        return get_swagger_ui_html(
            **page(root, "Swagger UI"),
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{root}{FAVICON}",
        )

    def redoc(root: str) -> HTMLResponse:
        return get_redoc_html(
            **page(root, "ReDoc"),
            redoc_js_url=f"{root}{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{FAVICON}",
            with_google_fonts=False,
        )

    for path, render in (("/docs", swagger_ui), ("/redoc", redoc)):
        _add_docs_page(app, path, render)


def _add_docs_page(app: FastAPI, path: str, render) -> None:
    """``GET path``: ``render(root path)``'s page, under the docs' content policy."""

    @app.get(path, include_in_schema=False)
    async def docs_page(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return confined(render(root), DOCS_POLICY)


def add_page(app: FastAPI) -> None:
    """The page to try a model (``page/index.html``) at ``/``."""
    add_page_assets(app)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(
            PAGE_DIR / "index.html",
            media_type="text/html",
            headers={"Content-Security-Policy": PAGE_POLICY},
        )


def confined(html: HTMLResponse, policy: str) -> HTMLResponse:
    """``html`` with a Content-Security-Policy: what it may load, and from where."""
    html.headers["Content-Security-Policy"] = policy
    return html


def add_page_assets(app: FastAPI) -> None:
    """The page's script, styles and icon under ``/page`` (once, for the docs and the page)."""
    if not any(getattr(route, "path", None) == PAGE_ASSETS for route in app.routes):
        app.mount(PAGE_ASSETS, StaticFiles(directory=PAGE_DIR), name="page")
