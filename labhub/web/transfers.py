"""Transfers: ship with a scanned manifest, receive with scans, the discrepancies side by side,
the in-transit list: ``/transfers``.
"""

from __future__ import annotations

from fastapi import APIRouter

from labhub.web.pages import PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)
