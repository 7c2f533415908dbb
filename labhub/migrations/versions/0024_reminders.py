"""Reminders: what is due, to whom, and what was already sent.

Revision ID: 0024_reminders
Revises: 0023_rollups
Create Date: 2026-12-05
"""

from __future__ import annotations

revision = "0024_reminders"
down_revision = "0023_rollups"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
