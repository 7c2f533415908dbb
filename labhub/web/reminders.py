"""The reminders page: what is due, for the person's role and sites."""

from __future__ import annotations

from fastapi import APIRouter

from labhub.web.pages import PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)
