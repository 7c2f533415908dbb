"""The network's tables (migration 0018). The central's tables are empty on a hub, and
the hub's on the central; both roles run the same migrations.

Positions (``network_positions.position``, ``network_membership.down_positions``) are JSON
lists of integers compared element by element (:mod:`labhub.network.protocol`).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from sensors.storage import NAMING_CONVENTION

metadata = MetaData(naming_convention=NAMING_CONVENTION)

KEY_MAX = 64  # a site code, as the inventory's keys
NAME_MAX = 200

# -- the central ---------------------------------------------------------------------------

# One row per enrolled hub. A lab enrolled again (a replacement for a stolen laptop)
# gets a new row; the old one is revoked and names its replacement.
network_hubs = Table(
    "network_hubs", metadata,
    Column("id", String(36), primary_key=True),  # UUID given at enrolment
    Column("site", String(KEY_MAX), nullable=False),  # the lab site it writes for
    Column("name", String(NAME_MAX), nullable=False),  # the machine's name, as it said
    Column("credential_hash", String(64), nullable=False, unique=True),  # SHA-256 hex
    Column("enrolled_at", BigInteger, nullable=False),
    Column("enrolled_by", String(NAME_MAX), nullable=False),  # who made the token
    Column("revoked_at", BigInteger, nullable=True),
    Column("replaced_by", String(36), nullable=True),
    # The last hello: when, and the health the hub reported then.
    Column("last_contact_at", BigInteger, nullable=True),
    Column("version", String(40), nullable=True),
    Column("uptime_s", BigInteger, nullable=True),
    Column("free_disk_bytes", BigInteger, nullable=True),
    Column("backlog", BigInteger, nullable=True),  # items the hub has not sent yet
    Column("devices_online", Integer, nullable=True),
    Column("dead_letters", BigInteger, nullable=True),  # the hub's dead-letter count
    Column("clock_offset_us", BigInteger, nullable=True),  # hub clock minus central's
    Column("health", Text, nullable=True),  # the last hello's health, whole, as JSON
    Index("ix_network_hubs_site", "site"),
)

# A one-time enrolment token for a lab (``lhe_...``), made by a coordinator or an admin.
network_enrolments = Table(
    "network_enrolments", metadata,
    Column("id", String(32), primary_key=True),
    Column("site", String(KEY_MAX), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_by", String(NAME_MAX), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("used_at", BigInteger, nullable=True),
    Column("used_by_hub", String(36), nullable=True),
)

# Each hub's acknowledged position in each of its up streams.
network_positions = Table(
    "network_positions", metadata,
    Column("hub_id", String(36), nullable=False),
    Column("stream", String(40), nullable=False),
    Column("position", Text, nullable=False),  # JSON list of integers
    Column("updated_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("hub_id", "stream", name="pk_network_positions"),
)

# The bytes of a batch as they arrive, a piece per request (a cut request keeps what
# came): stateless workers share them through the database.
network_upload_parts = Table(
    "network_upload_parts", metadata,
    Column("batch_id", String(36), nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("hub_id", String(36), nullable=False),
    Column("total", BigInteger, nullable=False),  # the whole batch's length
    Column("data", LargeBinary, nullable=False),
    Column("received_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("batch_id", "offset", name="pk_network_upload_parts"),
)

# Every batch applied, by its UUID: a batch sent again is answered, not applied again.
network_batches = Table(
    "network_batches", metadata,
    Column("id", String(36), primary_key=True),
    Column("hub_id", String(36), nullable=False),
    Column("applied_at", BigInteger, nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("items", BigInteger, nullable=False),
    Column("positions", Text, nullable=False),  # JSON: the positions after it
    Index("ix_network_batches_hub_id_applied_at", "hub_id", "applied_at"),
)

# What each lab sent each day (UTC): what the ministry's use view reads, kept up as
# batches are applied so it never scans the readings.
network_daily = Table(
    "network_daily", metadata,
    Column("site", String(KEY_MAX), nullable=False),
    Column("day", Integer, nullable=False),  # days since 1970-01-01, UTC
    Column("readings", BigInteger, nullable=False, server_default="0"),
    Column("batches", Integer, nullable=False, server_default="0"),
    Column("bytes", BigInteger, nullable=False, server_default="0"),
    PrimaryKeyConstraint("site", "day", name="pk_network_daily"),
    # The network's months (the use page's trend): every lab's days of a year read from
    # the index alone, in day order, without the table (migration 0021).
    Index("ix_network_daily_day_readings", "day", "readings"),
)

# A correction of a hub's clock over a time range, applied by a coordinator.
network_clock_corrections = Table(
    "network_clock_corrections", metadata,
    Column("id", String(36), primary_key=True),
    Column("site", String(KEY_MAX), nullable=False),
    Column("from_us", BigInteger, nullable=False),
    Column("to_us", BigInteger, nullable=False),
    Column("shift_us", BigInteger, nullable=False),
    Column("readings", BigInteger, nullable=False),  # how many were moved
    Column("by", String(NAME_MAX), nullable=False),
    Column("at", BigInteger, nullable=False),
)

# A record both sides changed while apart: the rule's outcome, shown to a coordinator.
network_conflicts = Table(
    "network_conflicts", metadata,
    Column("id", String(36), primary_key=True),
    Column("site", String(KEY_MAX), nullable=False),  # the lab it concerns
    Column("kind", String(40), nullable=False),  # asset, stock, ...
    Column("key", String(KEY_MAX), nullable=False),  # asset tag, ...
    Column("kept", Text, nullable=False),  # JSON: the state the rule kept
    Column("set_aside", Text, nullable=False),  # JSON: the other side's state
    Column("rule", String(NAME_MAX), nullable=False),  # which rule settled it, in words
    Column("detected_at", BigInteger, nullable=False),
    Column("seen_by", String(NAME_MAX), nullable=True),
    Column("seen_at", BigInteger, nullable=True),
    Index("ix_network_conflicts_site_detected_at", "site", "detected_at"),
)

# Present (one row) on a central: the hub-side outbox triggers write nothing there.
network_central = Table(
    "network_central", metadata,
    Column("id", Integer, primary_key=True),
    Column("since", BigInteger, nullable=False),
)

# -- the hub -------------------------------------------------------------------------------

# The hub's membership of a network: one row (id 1) once ``labhub network join`` ran.
network_membership = Table(
    "network_membership", metadata,
    Column("id", Integer, primary_key=True),
    Column("central_url", String(500), nullable=False),
    Column("hub_id", String(36), nullable=False),
    Column("credential", String(200), nullable=False),  # the hub's own secret (lhh_...)
    Column("site", String(KEY_MAX), nullable=False),
    Column("joined_at", BigInteger, nullable=False),
    Column("up_positions", Text, nullable=False, server_default="{}"),  # as acknowledged
    Column("down_positions", Text, nullable=False, server_default="{}"),  # as applied
    Column("last_contact_at", BigInteger, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("clock_offset_us", BigInteger, nullable=True),  # own clock minus the central's
)

# Records changed on the hub, in the order they changed (triggers on events, runs and
# run_notes write it; :mod:`labhub.network.outbox` reads it). ``seq`` is the position.
sync_outbox = Table(
    "sync_outbox", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("stream", String(20), nullable=False),  # events | runs | notes
    Column("key", String(64), nullable=False),  # the record's UUID (or id)
    Column("at", BigInteger, nullable=False),  # when it was written (microseconds)
    sqlite_autoincrement=True,
)
