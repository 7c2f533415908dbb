"""The jobs page: each job, its next run and last result; running one now."""

from __future__ import annotations

from fastapi import APIRouter

from labhub.web.pages import PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)
