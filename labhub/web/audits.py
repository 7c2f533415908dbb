"""Audits: a scan session on a phone (found, missing and unexpected grow as you scan), the
report, the corrections: ``/audits``.
"""

from __future__ import annotations

from fastapi import APIRouter

from labhub.web.pages import PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)
