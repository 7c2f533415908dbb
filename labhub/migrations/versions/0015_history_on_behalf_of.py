"""Inventory history: who a change was recorded for, beside who recorded it.

``events.by`` is the signed-in caller that made the change (a person's account name, a
device, or the CLI on the hub's machine); the new ``events.on_behalf_of`` is the person
it was recorded for when that is someone else (a coordinator checking in a loan for a
student), free text, null otherwise. Rows written before this revision have null.

Revision ID: 0015_history_on_behalf_of
Revises: 0014_classes
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_history_on_behalf_of"
down_revision = "0014_classes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("events", sa.Column("on_behalf_of", sa.String(200), nullable=True))


def downgrade() -> None:
    op.drop_column("events", "on_behalf_of")
