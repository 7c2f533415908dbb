"""The ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) pages, offline and without inline
script.

Swagger UI and ReDoc come from the ``fastapi_offline`` package (no CDN: a lab without
internet still reads its API). FastAPI's own pages start Swagger UI with a script inside
the page and style ReDoc's with a ``<style>`` element, which the pages' content security
policy (:data:`labhub.api.edge.PAGE_POLICY`: ``script-src 'self'``, ``style-src 'self'``)
does not run; here both are files of the hub's (``labhub/api/static``), and the page says
where the OpenAPI document is in an attribute the script reads. There is no OAuth2
redirect page: the hub has no OAuth2 flow that needs one.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Final

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from labhub.api.edge import PAGE_POLICY

STATIC_DIR: Final = Path(__file__).parent / "static"
STATIC_URL: Final = "/static-labhub"
# Where fastapi_offline serves Swagger UI's and ReDoc's files.
OFFLINE_URL: Final = "/static-offline-docs"
# ReDoc styles itself with styled-components: it adds an empty <style> element and fills
# it through the CSS object model (which a policy does not govern); the empty element is
# allowed by the hash of nothing. It also adds perfect-scrollbar's stylesheet as a <style>
# element of fixed text, allowed by its hash (that of the ReDoc 2.5 bundle of
# fastapi_offline 1.7; a newer bundle may change it: the browser's console then names the
# new hash, and only the side menu's scrollbars lose their style). Its search runs in a
# worker it makes from its own script (a blob: URL). No other inline style, no inline script.
EMPTY_STYLE_HASH: Final = "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"
SCROLLBAR_STYLE_HASH: Final = "'sha256-QMIg+bpjm3JdElJ388KYke01izlUW0UoNOeKjpMxdgc='"
REDOC_POLICY: Final = PAGE_POLICY.replace(
    "style-src 'self'", f"style-src 'self' {EMPTY_STYLE_HASH} {SCROLLBAR_STYLE_HASH}",
) + "; worker-src blob:"


def _swagger_page(root: str, title: str, openapi_url: str) -> str:
    return f"""<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link type="text/css" rel="stylesheet" href="{root}{OFFLINE_URL}/swagger-ui.css">
<link rel="icon" href="{root}{OFFLINE_URL}/favicon.png">
<title>{escape(title)} - Swagger UI</title>
</head>
<body>
<div id="swagger-ui" data-openapi-url="{escape(root + openapi_url)}"></div>
<script src="{root}{OFFLINE_URL}/swagger-ui-bundle.js"></script>
<script src="{root}{STATIC_URL}/swagger-init.js"></script>
</body>
</html>
"""


def _redoc_page(root: str, title: str, openapi_url: str) -> str:
    return f"""<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link type="text/css" rel="stylesheet" href="{root}{STATIC_URL}/docs.css">
<link rel="icon" href="{root}{OFFLINE_URL}/favicon.png">
<title>{escape(title)} - ReDoc</title>
</head>
<body>
<noscript>ReDoc needs JavaScript to show the documentation.</noscript>
<redoc spec-url="{escape(root + openapi_url)}"></redoc>
<script src="{root}{OFFLINE_URL}/redoc.standalone.js"></script>
</body>
</html>
"""


def install(app: FastAPI) -> None:
    """Serve the docs pages and their own files on ``app`` (made with ``docs_url`` and
    ``redoc_url`` None)."""
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="static-labhub")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = escape(request.scope.get("root_path", ""))
        return HTMLResponse(_swagger_page(root, app.title, openapi_url))

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = escape(request.scope.get("root_path", ""))
        return HTMLResponse(_redoc_page(root, app.title, openapi_url),
                            headers={"Content-Security-Policy": REDOC_POLICY})
