"""The hub's jobs: `GET /api/v1/jobs` (each job, its next run and last result), and running
one now."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
