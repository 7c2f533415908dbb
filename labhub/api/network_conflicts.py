"""The central's list of conflicts between a lab's hub and the central, each settled by
the documented rule and shown to a coordinator (docs/network.md)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
