"""Dead letters: the first 64 KiB of a payload, with the whole payload's size and digest.

``dead_letters`` gets ``payload_bytes`` (the size of the payload as it arrived) and
``payload_sha256`` (its SHA-256, hex), both nullable; from this revision on ``payload``
keeps only the first 64 KiB. Rows written before it keep their payload whole and null in
both columns (a listing reads their size with ``length()``).

Revision ID: 0010_dead_letter_digest
Revises: 0009_dead_letter_topic
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_dead_letter_digest"
down_revision = "0009_dead_letter_topic"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("dead_letters", sa.Column("payload_bytes", sa.BigInteger(), nullable=True))
    op.add_column("dead_letters", sa.Column("payload_sha256", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("dead_letters", "payload_sha256")
    op.drop_column("dead_letters", "payload_bytes")
