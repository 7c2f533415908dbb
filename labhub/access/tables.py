"""The tables of accounts: people, their grants, sessions, API tokens, device tokens and
the audit log (migration ``0012_accounts`` repeats them exactly).

Times are microseconds since the epoch, UTC, as everywhere in the hub. Secrets are never
stored: a session's id and a token's hash are SHA-256 of a random secret the client keeps
(a 32-byte random secret cannot be guessed, so a fast hash is enough); a password is an
argon2id hash (:mod:`labhub.access.passwords`). Accounts belong to one hub and are not
merged between hubs, so a person has an integer id; tokens have random ids.

Classes (migration ``0014_classes``) let students without e-mail sign in: a class at a
lab site has a teacher and a join code; each student is a ``users`` row with a student
grant at the class's site and a ``class_members`` row that holds the name as the class
knows it, the argon2id hash of the PIN and the SHA-256 hash of the QR card's secret.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    true,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

NAME_MAX = 100  # characters of a person's or a token's name
SITE_MAX = 64  # inventory.values.KEY_MAX: a site code, or "*"
DETAIL_MAX = 2000  # characters of an audit entry's detail
EMAIL_MAX = 254  # characters of an e-mail address (RFC 5321's limit on a path)
JOIN_CODE_LENGTH = 6  # characters of a class's join code (labhub.access.classes)

users = Table(
    "users", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(NAME_MAX), nullable=False),  # as typed, shown
    # NFKC + casefold of the name: "José" typed two ways, or "ANA" and "ana", are one person.
    Column("name_key", String(NAME_MAX * 4), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=True),  # none: cannot sign in by password
    Column("created_at", BigInteger, nullable=False),
    Column("disabled_at", BigInteger, nullable=True),
    Column("language", String(16), nullable=True),  # the pages' language; null: browser's
    # Where the day's reminders go (migration 0024_reminders); null: no e-mail.
    Column("email", String(EMAIL_MAX), nullable=True),
    # Whether the person wants the daily digest at that address.
    Column("reminder_emails", Boolean, nullable=False, server_default=true()),
)

grants = Table(
    "grants", metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("role", String(20), nullable=False),
    Column("site", String(SITE_MAX), nullable=False),  # a site code, or "*": the network
    UniqueConstraint("user_id", "role", "site", name="uq_grants_user_id_role_site"),
)

sessions = Table(
    "sessions", metadata,
    Column("id", String(64), primary_key=True),  # SHA-256 hex of the cookie's secret
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("last_seen_at", BigInteger, nullable=False),
    Column("address", String(64), nullable=True),
    Column("revoked_at", BigInteger, nullable=True),
    Column("csrf", String(64), nullable=False),
    Index("ix_sessions_user_id", "user_id"),
)

api_tokens = Table(
    "api_tokens", metadata,
    Column("id", String(32), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(NAME_MAX), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("permissions", Text, nullable=True),  # JSON list; null: all of the person's
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=True),
    Column("last_used_at", BigInteger, nullable=True),
    Column("revoked_at", BigInteger, nullable=True),
    Index("ix_api_tokens_user_id", "user_id"),
)

device_tokens = Table(
    "device_tokens", metadata,
    Column("id", String(32), primary_key=True),
    Column("device_id", String(SITE_MAX), nullable=False),
    Column("site", String(SITE_MAX), nullable=True),
    Column("name", String(NAME_MAX), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", BigInteger, nullable=False),
    Column("last_used_at", BigInteger, nullable=True),
    Column("revoked_at", BigInteger, nullable=True),
)

audit_log = Table(
    "audit_log", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", BigInteger, nullable=False),
    Column("actor", String(NAME_MAX), nullable=False),
    Column("on_behalf_of", String(NAME_MAX), nullable=True),
    Column("action", String(40), nullable=False),
    Column("target", String(200), nullable=True),
    Column("site", String(SITE_MAX), nullable=True),
    Column("address", String(64), nullable=True),
    Column("outcome", String(20), nullable=False),
    Column("detail", Text, nullable=True),
    Index("ix_audit_log_at", "at"),
)

classes = Table(
    "classes", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("site", String(SITE_MAX), nullable=False),  # the lab site: a site code
    Column("name", String(NAME_MAX), nullable=False),  # "7°B Ciencias", as typed
    Column("teacher_id", Integer, ForeignKey("users.id", ondelete="SET NULL"),
           nullable=True),
    # Upper-case letters and digits without 0/O/1/I; a new one can be drawn at any time.
    Column("join_code", String(JOIN_CODE_LENGTH), nullable=False, unique=True),
    Column("joining_until", BigInteger, nullable=True),  # self-join open until; null: shut
    Column("created_at", BigInteger, nullable=False),
    Index("ix_classes_site", "site"),
)

class_members = Table(
    "class_members", metadata,
    Column("class_id", Integer, ForeignKey("classes.id", ondelete="CASCADE"),
           nullable=False),
    # One account per student of a class: its users row (name "class-<id>/<name>").
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False,
           unique=True),
    Column("name", String(NAME_MAX), nullable=False),  # as the class knows the student
    Column("name_key", String(NAME_MAX * 4), nullable=False),  # NFKC + casefold
    Column("pin_hash", String(255), nullable=False),  # argon2id, as passwords
    Column("card_hash", String(64), nullable=True, unique=True),  # SHA-256 of the secret
    Column("card_issued_at", BigInteger, nullable=True),
    Column("joined_at", BigInteger, nullable=False),
    UniqueConstraint("class_id", "name_key", name="uq_class_members_class_id_name_key"),
)
