"""Dead letters: the MQTT topic in a column of its own.

``dead_letters`` gets ``topic`` (nullable): the topic an MQTT dead letter came in on, so
rejects can be listed and filtered by it. Rows written before this revision keep null
(their topic stays readable at the start of the reason, ``topic <topic>: ...``), as do
dead letters of other sources.

Revision ID: 0009_dead_letter_topic
Revises: 0008_audit_counts_expected
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_dead_letter_topic"
down_revision = "0008_audit_counts_expected"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("dead_letters", sa.Column("topic", sa.String(1000), nullable=True))


def downgrade() -> None:
    op.drop_column("dead_letters", "topic")
