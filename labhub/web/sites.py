"""The site tree (network, region, municipality, lab; tier, rural, rollout) and each lab's page
with its counts: ``/sites``, ``/sites/{code}``.
"""

from __future__ import annotations

from fastapi import APIRouter

from labhub.web.pages import PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)
