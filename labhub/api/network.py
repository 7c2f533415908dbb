"""The network's API on the central: enrolment, a hub's join, hello, batches and down (hub
credentials), and the enrolled hubs (docs/network.md)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
