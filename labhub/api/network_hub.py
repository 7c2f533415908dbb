"""The network's API on a hub: its membership and sync status, and a contact now."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
