"""The tables inventory sync keeps besides the inventory's own (migration 0020).

- ``network_inventory_marks`` (the central): each lab record's digest as last applied
  from the lab that owns it. A record whose current digest differs from its mark was
  changed on the central since; when the owner's next version arrives, the owner's wins
  and the central's is kept as a conflict (``network_conflicts``).
- ``network_down_people`` (a hub): the people the central last sent down for the lab, so
  a person the central no longer lists loses the lab's grants on the hub too.
- ``network_down_events`` (a hub): the events that came down as copies of other labs'
  history (a transfer's items, the rollout): the outbox lists them, as every event
  written, and the up streams leave them out, so a hub sends only what it wrote.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, MetaData, PrimaryKeyConstraint, String, Table

from sensors.storage import NAMING_CONVENTION

metadata = MetaData(naming_convention=NAMING_CONVENTION)

KEY_MAX = 64
RECORD_KEY_MAX = 200  # a record's primary key, parts joined by "/"

network_inventory_marks = Table(
    "network_inventory_marks", metadata,
    Column("site", String(KEY_MAX), nullable=False),  # the lab that owns the record
    Column("kind", String(40), nullable=False),  # its table
    Column("key", String(RECORD_KEY_MAX), nullable=False),
    Column("digest", String(32), nullable=False),
    Column("at", BigInteger, nullable=False),  # microseconds since the epoch, UTC
    PrimaryKeyConstraint("kind", "key", name="pk_network_inventory_marks"),
)

network_down_people = Table(
    "network_down_people", metadata,
    Column("name_key", String(400), primary_key=True),
    Column("at", BigInteger, nullable=False),
)

network_down_events = Table(
    "network_down_events", metadata,
    Column("uuid", String(36), primary_key=True),
    Column("at", BigInteger, nullable=False),
)
