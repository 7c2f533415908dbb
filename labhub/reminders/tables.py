"""The reminders' table: which reminder was e-mailed to whom (migration ``0024_reminders``).

One row per (person, reminder key), written only once the mail server accepted the digest
that carried it: a key in here is never sent to that person again. Rows of reminders that
are no longer true are dropped by the next digest (``labhub.reminders.digest``), so a
shortage that comes back after a delivery, say, is a reminder again.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

KEY_MAX = 400  # "device-silent:" + a device id (200) + a time; the others are shorter

reminders_sent = Table(
    "reminders_sent", metadata,
    # The person's account (``users.id``; accounts are disabled, never deleted).
    Column("account", Integer, primary_key=True),
    Column("reminder_key", String(KEY_MAX), primary_key=True),
    Column("sent_at", BigInteger, nullable=False),  # microseconds since the epoch, UTC
)
