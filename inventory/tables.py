"""The inventory tables: sites, catalog models, assets and their history of events.

SQLAlchemy Core tables on one MetaData with a naming convention, so every index and
constraint has a predictable name that the hand-written migrations
(``labhub/migrations/versions/0003_inventory.py``, ``0004_inventory_movements.py`` for
locations, stock, kits, loans and repairs, ``0005_inventory_transfers_audits.py`` for
transfers, rotations and audits, and ``0011_inventory_edits.py`` for the versions and
retirement of sites and models) repeat exactly. Keys are stable
strings (site code, model code, asset tag, event UUID), never autoincrement ids: data
from many hubs must merge centrally. Enumerations are checked by the services, not by
the database.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from inventory.values import KEY_MAX, TEXT_MAX

# The same names as sensors.storage.NAMING_CONVENTION, written out: inventory stays
# independent of the readings domain (an import-linter contract).
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# The tree of the network: network > region > municipality > lab site (a lab site may
# also hang directly under a region). The lab-site columns are null for the other kinds.
sites = Table(
    "sites",
    metadata,
    Column("code", String(KEY_MAX), primary_key=True),
    Column("name", String(TEXT_MAX), nullable=False),
    Column("kind", String(20), nullable=False),  # network | region | municipality | site
    Column("parent_code", String(KEY_MAX), ForeignKey("sites.code"), nullable=True),
    Column("tier", String(20), nullable=True),  # lab_center | lab_point | lab_spark | mobile_lab
    Column("rural", Boolean, nullable=True),
    Column("latitude", Float, nullable=True),  # degrees, WGS 84
    Column("longitude", Float, nullable=True),
    Column("institution", String(TEXT_MAX), nullable=True),
    Column("rollout_status", String(20), nullable=True),
    Column("rollout_changed_at", BigInteger, nullable=True),  # microseconds since the epoch, UTC
    # Optimistic concurrency (migration 0011): +1 on every change; a stale write is refused.
    Column("version", Integer, nullable=False, server_default="1"),
    # When the site was retired (microseconds since the epoch, UTC); null while in use.
    Column("retired_at", BigInteger, nullable=True),
    Index("ix_sites_parent_code", "parent_code"),
)

# Item models of the catalog: a serialized model has individual assets; a counted one
# is kept as a quantity in ``unit`` (per site: ``stock``).
models = Table(
    "models",
    metadata,
    Column("code", String(KEY_MAX), primary_key=True),
    Column("name", String(TEXT_MAX), nullable=False),
    Column("category", String(40), nullable=False),
    Column("tracking", String(20), nullable=False),  # serialized | counted
    Column("unit", String(20), nullable=True),  # for counted models: "pcs", "m", "kg"
    Column("version", Integer, nullable=False, server_default="1"),  # as sites (0011)
    Column("retired_at", BigInteger, nullable=True),  # no new assets or stock once retired
)

assets = Table(
    "assets",
    metadata,
    Column("tag", String(KEY_MAX), primary_key=True),
    Column("model_code", String(KEY_MAX), ForeignKey("models.code"), nullable=False),
    # Unique when present: several NULLs are allowed by both SQLite and PostgreSQL.
    Column("serial_number", String(TEXT_MAX), nullable=True, unique=True),
    Column("status", String(20), nullable=False),
    Column("condition", String(20), nullable=False),
    Column("site_code", String(KEY_MAX), ForeignKey("sites.code"), nullable=False),
    Column("notes", Text, nullable=True),
    Column("updated_at", BigInteger, nullable=False),  # microseconds since the epoch, UTC
    # A room or shelf of ``locations`` at the asset's site (checked by the services, not
    # by a foreign key: a move to another site clears it).
    Column("location_code", String(KEY_MAX), nullable=True),
    # Optimistic concurrency: +1 on every change; a write with a stale expected version
    # is refused. The server default numbers rows written before migration 0004 too.
    Column("version", Integer, nullable=False, server_default="1"),
    Index("ix_assets_site_code", "site_code"),
    Index("ix_assets_status", "status"),
    # The region list (``list_assets`` with a site subtree and a status, ordered by tag):
    # SQLite finds each lab's matching tags in tag order from this index alone.
    Index("ix_assets_site_code_status_tag", "site_code", "status", "tag"),
)

# Append-only: rows are inserted, never updated or deleted. No foreign keys: history
# outlives what it talks about, and events from other hubs may arrive before their sites.
events = Table(
    "events",
    metadata,
    Column("uuid", String(36), primary_key=True),
    Column("at", BigInteger, nullable=False),  # microseconds since the epoch, UTC
    Column("kind", String(40), nullable=False),  # past tense: AssetMoved, SiteCreated
    Column("subject", String(KEY_MAX), nullable=False),  # asset tag, site code or model code
    Column("by", String(TEXT_MAX), nullable=False),  # the signed-in caller (migration 0015)
    Column("on_behalf_of", String(TEXT_MAX), nullable=True),  # the person it was for, if other
    Column("site_code", String(KEY_MAX), nullable=True),
    Column("from_state", Text, nullable=True),  # JSON object of the changed fields, before
    Column("to_state", Text, nullable=True),  # JSON object of the changed fields, after
    Column("note", Text, nullable=True),
    Index("ix_events_subject_at", "subject", "at"),
)


# -- movements: locations, counted stock, kits, loans, repairs (migration 0004) ----------

# Rooms and shelves inside a lab site, keyed by the site code and a code unique there.
locations = Table(
    "locations",
    metadata,
    Column("site_code", String(KEY_MAX), ForeignKey("sites.code"), primary_key=True),
    Column("code", String(KEY_MAX), primary_key=True),
    Column("name", String(TEXT_MAX), nullable=False),
)

# How much of a counted model a lab site holds (loose parts and the parts inside its
# kits), and the level under which it must be reordered.
stock = Table(
    "stock",
    metadata,
    Column("site_code", String(KEY_MAX), ForeignKey("sites.code"), primary_key=True),
    Column("model_code", String(KEY_MAX), ForeignKey("models.code"), primary_key=True),
    Column("quantity", Integer, nullable=False),  # in the model's unit, never below 0
    Column("reorder_threshold", Integer, nullable=True),  # reorder when quantity < this
    Column("version", Integer, nullable=False),
    Column("updated_at", BigInteger, nullable=False),  # microseconds since the epoch, UTC
)

# What a kit should hold: tagged assets (kind "asset", quantity 1) and counted parts
# (kind "model", a quantity in the model's unit). ``part`` is the asset tag or model code.
kit_contents = Table(
    "kit_contents",
    metadata,
    Column("kit_tag", String(KEY_MAX), ForeignKey("assets.tag"), primary_key=True),
    Column("part", String(KEY_MAX), primary_key=True),
    Column("kind", String(10), nullable=False),  # asset | model
    Column("quantity", Integer, nullable=False),
    Index("ix_kit_contents_part", "part"),
)

# What a kit check found short: lost or damaged parts, on the kit, never updated.
kit_losses = Table(
    "kit_losses",
    metadata,
    Column("uuid", String(36), primary_key=True),
    Column("kit_tag", String(KEY_MAX), ForeignKey("assets.tag"), nullable=False),
    Column("part", String(KEY_MAX), nullable=False),  # asset tag or model code
    Column("kind", String(10), nullable=False),  # asset | model
    Column("damage", String(10), nullable=False),  # lost | damaged
    Column("quantity", Integer, nullable=False),
    Column("loan_uuid", String(36), nullable=True),
    Column("site_code", String(KEY_MAX), nullable=False),  # where the kit was checked
    Column("at", BigInteger, nullable=False),  # microseconds since the epoch, UTC
    Column("by", String(TEXT_MAX), nullable=False),
    Index("ix_kit_losses_kit_tag", "kit_tag"),
)

loans = Table(
    "loans",
    metadata,
    Column("uuid", String(36), primary_key=True),
    Column("borrower", String(TEXT_MAX), nullable=False),  # "Prof. Marta Ruiz, 7B"
    Column("borrower_kind", String(10), nullable=False),  # person | group | room
    Column("purpose", String(TEXT_MAX), nullable=True),
    Column("site_code", String(KEY_MAX), ForeignKey("sites.code"), nullable=False),
    Column("checked_out_at", BigInteger, nullable=False),  # microseconds since the epoch, UTC
    Column("due_at", BigInteger, nullable=False),
    Column("closed_at", BigInteger, nullable=True),  # when the last item came back
    Column("by", String(TEXT_MAX), nullable=False),
    Column("version", Integer, nullable=False),
    Index("ix_loans_due_at", "due_at"),
    Index("ix_loans_borrower", "borrower"),
)

# The assets (and kits) of a loan; an item is back once ``returned_at`` is set.
loan_items = Table(
    "loan_items",
    metadata,
    Column("loan_uuid", String(36), ForeignKey("loans.uuid"), primary_key=True),
    Column("asset_tag", String(KEY_MAX), ForeignKey("assets.tag"), primary_key=True),
    Column("returned_at", BigInteger, nullable=True),
    Column("condition", String(20), nullable=True),  # as it came back
    Index("ix_loan_items_asset_tag", "asset_tag"),
)

# A kit's parts that came back in partial returns, summed until the kit check.
loan_kit_returns = Table(
    "loan_kit_returns",
    metadata,
    Column("loan_uuid", String(36), ForeignKey("loans.uuid"), primary_key=True),
    Column("kit_tag", String(KEY_MAX), ForeignKey("assets.tag"), primary_key=True),
    Column("part", String(KEY_MAX), primary_key=True),
    Column("quantity", Integer, nullable=False),
    Column("damaged", Integer, nullable=False),
)

repairs = Table(
    "repairs",
    metadata,
    Column("uuid", String(36), primary_key=True),
    Column("asset_tag", String(KEY_MAX), ForeignKey("assets.tag"), nullable=False),
    Column("fault", Text, nullable=False),
    Column("started_at", BigInteger, nullable=False),  # microseconds since the epoch, UTC
    Column("started_by", String(TEXT_MAX), nullable=False),
    Column("finished_at", BigInteger, nullable=True),
    Column("finished_by", String(TEXT_MAX), nullable=True),
    Column("work_done", Text, nullable=True),
    Column("condition_after", String(20), nullable=True),
    Index("ix_repairs_asset_tag", "asset_tag"),
)


# -- transfers, mobile-lab rotations and audits (migration 0005_inventory_transfers_audits) --

# A shipment of tagged assets from one lab site to another: draft, shipped, received.
# ``version`` goes up by one on every change of the transfer (409 on a stale write).
transfers = Table(
    "transfers",
    metadata,
    Column("uuid", String(36), primary_key=True),
    Column("from_site_code", String(KEY_MAX), ForeignKey("sites.code"), nullable=False),
    Column("to_site_code", String(KEY_MAX), ForeignKey("sites.code"), nullable=False),
    Column("status", String(20), nullable=False),  # draft | shipped | received
    Column("version", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),  # microseconds since the epoch, UTC
    Column("created_by", String(TEXT_MAX), nullable=False),
    Column("shipped_at", BigInteger, nullable=True),
    Column("carrier", String(TEXT_MAX), nullable=True),  # who carries the shipment
    Column("received_at", BigInteger, nullable=True),
    Column("received_by", String(TEXT_MAX), nullable=True),
    Column("missing_as", String(20), nullable=True),  # in_transit | lost, chosen on receipt
    Column("note", Text, nullable=True),
    Index("ix_transfers_status", "status"),
)

# The assets on a transfer (while a draft, the list can change).
transfer_items = Table(
    "transfer_items",
    metadata,
    Column("transfer_uuid", String(36), ForeignKey("transfers.uuid"), primary_key=True),
    Column("asset_tag", String(KEY_MAX), ForeignKey("assets.tag"), primary_key=True),
    Column("added_at", BigInteger, nullable=False),  # microseconds since the epoch, UTC
    Index("ix_transfer_items_asset_tag", "asset_tag"),
)

# Tags scanned at the destination while receiving; a tag may be off the transfer or
# unknown to the inventory (no foreign key: an extra is recorded as it was scanned).
transfer_scans = Table(
    "transfer_scans",
    metadata,
    Column("transfer_uuid", String(36), ForeignKey("transfers.uuid"), primary_key=True),
    Column("tag", String(KEY_MAX), primary_key=True),
    Column("scanned_at", BigInteger, nullable=False),  # microseconds since the epoch, UTC
    Column("scanned_by", String(TEXT_MAX), nullable=False),
)

# What did not match on receipt: ``missing`` (shipped, not scanned) or ``extra``
# (scanned, not on the transfer), with what was done about it.
transfer_discrepancies = Table(
    "transfer_discrepancies",
    metadata,
    Column("transfer_uuid", String(36), ForeignKey("transfers.uuid"), primary_key=True),
    Column("tag", String(KEY_MAX), primary_key=True),
    Column("kind", String(20), nullable=False),  # missing | extra
    # missing: in_transit | lost; extra: unchanged (a known asset) | unknown (no such tag)
    Column("resolution", String(20), nullable=False),
    Column("recorded_site_code", String(KEY_MAX), nullable=True),  # an extra: where it is recorded
    Column("recorded_at", BigInteger, nullable=False),  # microseconds since the epoch, UTC
)

# The assets that travel with a mobile lab (a site of tier mobile_lab); one manifest each.
manifest_items = Table(
    "manifest_items",
    metadata,
    Column("asset_tag", String(KEY_MAX), ForeignKey("assets.tag"), primary_key=True),
    Column("mobile_lab_code", String(KEY_MAX), ForeignKey("sites.code"), nullable=False),
    Column("added_at", BigInteger, nullable=False),  # microseconds since the epoch, UTC
    Index("ix_manifest_items_mobile_lab_code", "mobile_lab_code"),
)

# A mobile lab's planned route; each stop moves the manifest in (arrival transfer) and
# back out (departure transfer).
rotations = Table(
    "rotations",
    metadata,
    Column("uuid", String(36), primary_key=True),
    Column("mobile_lab_code", String(KEY_MAX), ForeignKey("sites.code"), nullable=False),
    Column("name", String(TEXT_MAX), nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),  # microseconds since the epoch, UTC
    Column("created_by", String(TEXT_MAX), nullable=False),
    Index("ix_rotations_mobile_lab_code", "mobile_lab_code"),
)

rotation_stops = Table(
    "rotation_stops",
    metadata,
    Column("rotation_uuid", String(36), ForeignKey("rotations.uuid"), primary_key=True),
    Column("seq", Integer, primary_key=True),  # 1, 2, ... in route order
    Column("site_code", String(KEY_MAX), ForeignKey("sites.code"), nullable=False),
    Column("arrive_on", String(10), nullable=False),  # planned date, ISO 8601 (YYYY-MM-DD)
    Column("depart_on", String(10), nullable=False),
    Column("arrival_transfer_uuid", String(36), ForeignKey("transfers.uuid"), nullable=True),
    Column("departure_transfer_uuid", String(36), ForeignKey("transfers.uuid"), nullable=True),
)

# A stocktake at one lab site: open (scanning) until finished; corrections applied once.
audits = Table(
    "audits",
    metadata,
    Column("uuid", String(36), primary_key=True),
    Column("site_code", String(KEY_MAX), ForeignKey("sites.code"), nullable=False),
    Column("status", String(20), nullable=False),  # open | finished | applied
    Column("version", Integer, nullable=False),
    Column("started_at", BigInteger, nullable=False),  # microseconds since the epoch, UTC
    Column("started_by", String(TEXT_MAX), nullable=False),
    Column("finished_at", BigInteger, nullable=True),
    Column("applied_at", BigInteger, nullable=True),
    Index("ix_audits_site_code", "site_code"),
)

# Tags scanned during an audit (any tag: an unknown one is reported, not refused).
audit_scans = Table(
    "audit_scans",
    metadata,
    Column("audit_uuid", String(36), ForeignKey("audits.uuid"), primary_key=True),
    Column("tag", String(KEY_MAX), primary_key=True),
    Column("scanned_at", BigInteger, nullable=False),  # microseconds since the epoch, UTC
    Column("scanned_by", String(TEXT_MAX), nullable=False),
)

# Counted quantities of counted models, as found on the shelf (compared with stock later).
audit_counts = Table(
    "audit_counts",
    metadata,
    Column("audit_uuid", String(36), ForeignKey("audits.uuid"), primary_key=True),
    Column("model_code", String(KEY_MAX), ForeignKey("models.code"), primary_key=True),
    Column("quantity", Integer, nullable=False),  # in the model's unit
    Column("counted_at", BigInteger, nullable=False),  # microseconds since the epoch, UTC
    Column("counted_by", String(TEXT_MAX), nullable=False),
    # The site's stock of the model when the audit finished (migration 0008): the report
    # compares it with the count; null while the audit is open.
    Column("expected", Integer, nullable=True),
    Column("corrected_at", BigInteger, nullable=True),  # when applying recounted the stock
)

# The report, frozen when the audit finishes: found | missing | unexpected | unknown.
audit_findings = Table(
    "audit_findings",
    metadata,
    Column("audit_uuid", String(36), ForeignKey("audits.uuid"), primary_key=True),
    Column("tag", String(KEY_MAX), primary_key=True),
    Column("finding", String(20), nullable=False),
    Column("source", String(TEXT_MAX), nullable=True),  # found by: "scan" or a sighting's source
    Column("model_code", String(KEY_MAX), nullable=True),
    Column("recorded_site_code", String(KEY_MAX), nullable=True),  # where it was recorded
    Column("recorded_status", String(20), nullable=True),
    Column("corrected_at", BigInteger, nullable=True),  # when its correction was applied
)

# Scans sent from a phone or a lab PC, each with its own idempotency key (a UUID the page
# makes when the scan is taken): a scan sent twice, after a lost answer or from a page
# that was offline, is recorded once (``inventory.receipts``).
scan_receipts = Table(
    "scan_receipts",
    metadata,
    Column("key", String(36), primary_key=True),
    Column("subject", String(KEY_MAX + 40), nullable=False),  # "audit:<uuid>", "loan:<tag>"...
    Column("tag", String(KEY_MAX), nullable=False),
    Column("received_at", BigInteger, nullable=False),  # microseconds since the epoch, UTC
    Column("received_by", String(TEXT_MAX), nullable=False),
    Index("ix_scan_receipts_subject", "subject"),
)

# -- service plans (migration 0024_reminders) --------------------------------------------------

# Planned upkeep of an asset: its maintenance and its calibration, each every so many days
# since it was last done (``inventory.service``). Due = last done + interval; recording it
# done moves ``last_done_at`` on.
service_plans = Table(
    "service_plans",
    metadata,
    Column("asset_tag", String(KEY_MAX), ForeignKey("assets.tag"), primary_key=True),
    Column("kind", String(20), primary_key=True),  # maintenance | calibration
    Column("every_days", Integer, nullable=False),
    Column("last_done_at", BigInteger, nullable=False),  # microseconds since the epoch, UTC
    Column("updated_at", BigInteger, nullable=False),
)
