"""The inventory tables: sites, catalog models, assets and their history of events.

SQLAlchemy Core tables on one MetaData with a naming convention, so every index and
constraint has a predictable name that the hand-written migration
(``labhub/migrations/versions/0003_inventory.py``) repeats exactly. Keys are stable
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
    Index("ix_sites_parent_code", "parent_code"),
)

# Item models of the catalog: a serialized model has individual assets; a counted one
# is kept as a quantity in ``unit`` (stock is not built yet).
models = Table(
    "models",
    metadata,
    Column("code", String(KEY_MAX), primary_key=True),
    Column("name", String(TEXT_MAX), nullable=False),
    Column("category", String(40), nullable=False),
    Column("tracking", String(20), nullable=False),  # serialized | counted
    Column("unit", String(20), nullable=True),  # for counted models: "pcs", "m", "kg"
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
    Index("ix_assets_site_code", "site_code"),
    Index("ix_assets_status", "status"),
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
    Column("by", String(TEXT_MAX), nullable=False),  # free text until people and roles exist
    Column("site_code", String(KEY_MAX), nullable=True),
    Column("from_state", Text, nullable=True),  # JSON object of the changed fields, before
    Column("to_state", Text, nullable=True),  # JSON object of the changed fields, after
    Column("note", Text, nullable=True),
    Index("ix_events_subject_at", "subject", "at"),
)
