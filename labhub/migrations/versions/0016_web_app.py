"""The web app: a person's language, and who started a run.

``users.language`` is the language the person chose for the pages (``es``, ``pt``,
``en`` or a catalog added later); null: the browser's, else the hub's. ``runs.started_by``
is the account name of the person who started the run (a student's "my runs"); null for
runs started before this revision or by a token of no person.

Revision ID: 0016_web_app
Revises: 0015_history_on_behalf_of
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_web_app"
down_revision = "0015_history_on_behalf_of"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("language", sa.String(16), nullable=True))
    op.add_column("runs", sa.Column("started_by", sa.String(200), nullable=True))
    op.create_index("ix_runs_started_by", "runs", ["started_by"])


def downgrade() -> None:
    op.drop_index("ix_runs_started_by", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("started_by")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("language")
