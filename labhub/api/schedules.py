"""Scheduled runs: a class's run that starts and stops by itself."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
