"""Mobile-lab rotations: the route's stops and, at each, the manifest checked by scan:
``/rotations``.
"""

from __future__ import annotations

from fastapi import APIRouter

from labhub.web.pages import PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)
