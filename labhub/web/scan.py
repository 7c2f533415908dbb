"""Check-out and check-in of a kit or an asset by its QR label (camera, USB scanner or typed);
the check-in shows what is missing and extra before it is confirmed: ``/scan``.
"""

from __future__ import annotations

from fastapi import APIRouter

from labhub.web.pages import PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)
