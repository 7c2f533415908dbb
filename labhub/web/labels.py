"""QR label sheets for chosen assets and kits (A4, and a small label printer's format),
previewed in the page: ``/labels``.
"""

from __future__ import annotations

from fastapi import APIRouter

from labhub.web.pages import PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)
