"""The ministry's view of the network as data: rollout, use and their CSV exports."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
