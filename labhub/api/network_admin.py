"""The central's corrections: clock corrections of a lab's readings, and conflicts seen."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
