"""Counted consumables per site and the low-stock list by reorder level: ``/stock``."""

from __future__ import annotations

from fastapi import APIRouter

from labhub.web.pages import PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)
