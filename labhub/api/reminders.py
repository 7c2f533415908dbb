"""Reminders: what is due for the person asking (loans, audits, maintenance, stock, silent
devices)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
