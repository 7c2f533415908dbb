"""Dead letters: what kind of refusal, the site named, the wire format, and replays.

``dead_letters`` gets four nullable columns: ``kind`` (why, as a word a filter can take:
``unknown_site`` for readings naming a site that is not in the inventory's tree; null for
the other reasons and older rows), ``site`` (the site the submission named), ``format``
(the wire format of an HTTP device upload, ``POST /api/v1/devices/{id}/data``; null for
JSON uploads and MQTT, whose topic says it) and ``replayed_at`` (when the dead letter was
replayed into storage, microseconds since the epoch, UTC; null while it was not).

Revision ID: 0013_dead_letter_replay
Revises: 0012_accounts
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_dead_letter_replay"
down_revision = "0012_accounts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("dead_letters", sa.Column("kind", sa.String(40), nullable=True))
    op.add_column("dead_letters", sa.Column("site", sa.String(100), nullable=True))
    op.add_column("dead_letters", sa.Column("format", sa.String(40), nullable=True))
    op.add_column("dead_letters", sa.Column("replayed_at", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    for column in ("replayed_at", "format", "site", "kind"):
        op.drop_column("dead_letters", column)
