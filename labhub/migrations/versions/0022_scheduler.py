"""The scheduler: job runs, and the lock that lets one process of a database run the jobs.

Revision ID: 0022_scheduler
Revises: 0021_network_central
Create Date: 2026-12-05
"""

from __future__ import annotations

revision = "0022_scheduler"
down_revision = "0021_network_central"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
