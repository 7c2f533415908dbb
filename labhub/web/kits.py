"""Kits: their contents and whether each is complete: ``/kits``, ``/kits/{tag}``."""

from __future__ import annotations

from fastapi import APIRouter

from labhub.web.pages import PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)
