"""The scheduled runs page."""

from __future__ import annotations

from fastapi import APIRouter

from labhub.web.pages import PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)
