"""Asset search (tag, model, status, site, text; paging, totals, CSV) and an asset's page with
its history as a timeline, repairs and maintenance: ``/assets``, ``/assets/{tag}``.
"""

from __future__ import annotations

from fastapi import APIRouter

from labhub.web.pages import PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)
