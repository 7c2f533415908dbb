"""`/metrics` in Prometheus's text format, protected like the rest of the API."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
