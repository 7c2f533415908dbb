"""Scheduled runs: a class's run that starts and stops by itself.

Revision ID: 0025_schedules
Revises: 0024_reminders
Create Date: 2026-12-05
"""

from __future__ import annotations

revision = "0025_schedules"
down_revision = "0024_reminders"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
