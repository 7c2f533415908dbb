"""People, their grants, sessions, API tokens and device tokens: keyword-only service
functions on a connection, used by the API, the CLI and the tests alike.

A name is shown as typed and compared by :func:`name_key` (NFKC, then casefold), so
"José" typed with a combining accent and "JOSÉ" are one account. Secrets (session
cookies, tokens) are made here, returned once, and stored only as SHA-256 hashes.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import unicodedata
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, and_, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from labhub.access.audit import now_us
from labhub.access.caller import NETWORK
from labhub.access.permissions import ROLE_PERMISSIONS, Grant, Permission, Role
from labhub.access.tables import (
    EMAIL_MAX,
    NAME_MAX,
    SITE_MAX,
    api_tokens,
    device_tokens,
    grants,
    sessions,
    users,
)

PERSON_TOKEN_PREFIX = "lhp_"  # noqa: S105 -- a prefix, not a secret: a person's API token
DEVICE_TOKEN_PREFIX = "lhd_"  # noqa: S105 -- a prefix: a device's token, its own uploads
TOKEN_BYTES = 32  # random bytes of a token or a session secret: never guessed
US_PER_HOUR = 3_600_000_000
# Roles that may be given on the whole network ("*"); the others belong to a site.
NETWORK_ROLES = frozenset({Role.ADMIN, Role.MINISTRY})


class AccountError(Exception):
    """Base of the accounts' errors::

        AccountError
        ├── UnknownAccountError     no such person or token (404)
        ├── NameTakenError          the name (as compared) is taken (409)
        └── InvalidAccountValueError  a name, role, site or permission out of its rules (422)
    """


class UnknownAccountError(AccountError):
    pass


class NameTakenError(AccountError):
    pass


class InvalidAccountValueError(AccountError):
    pass


def name_key(name: str) -> str:
    """What names are compared by: NFKC-normalised, casefolded, trimmed."""
    return unicodedata.normalize("NFKC", name).casefold().strip()


def check_name(name: str, what: str = "a name") -> str:
    """``name`` trimmed, or InvalidAccountValueError: 1 to NAME_MAX printable characters."""
    name = unicodedata.normalize("NFC", name).strip()
    if not name:
        raise InvalidAccountValueError(f"{what} cannot be empty")
    if len(name) > NAME_MAX:
        raise InvalidAccountValueError(f"{what} has at most {NAME_MAX} characters")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") for c in name):
        raise InvalidAccountValueError(f"{what} may hold only printable characters")
    return name


def check_grant(role: str, site: str) -> Grant:
    """A grant from text, or InvalidAccountValueError: a known role; ``*`` only for admin
    and ministry."""
    try:
        the_role = Role(role)
    except ValueError:
        raise InvalidAccountValueError(
            f"no role {role!r}: use one of {', '.join(r.value for r in Role)}") from None
    if not site or len(site) > SITE_MAX:
        raise InvalidAccountValueError(f"a grant needs a site code (1 to {SITE_MAX} "
                                       "characters) or '*' for the whole network")
    if site == NETWORK and the_role not in NETWORK_ROLES:
        raise InvalidAccountValueError(f"the role {role!r} is given at a site, not on the "
                                       "whole network '*'")
    return Grant(the_role, site)


def check_permissions(names: list[str] | None) -> frozenset[Permission] | None:
    """Permissions of a token from text; ``public`` and ``signed_in`` are not given."""
    if names is None:
        return None
    out = set()
    for name in names:
        try:
            permission = Permission(name)
        except ValueError:
            raise InvalidAccountValueError(f"no permission {name!r}") from None
        if permission in (Permission.PUBLIC, Permission.SIGNED_IN):
            raise InvalidAccountValueError(f"{name!r} is not a permission a token carries")
        out.add(permission)
    return frozenset(out)


def permissions_of(given: tuple[Grant, ...] | list[Grant]) -> frozenset[Permission]:
    """Every permission some grant gives."""
    out: set[Permission] = set()
    for g in given:
        out |= ROLE_PERMISSIONS[g.role]
    return frozenset(out)


def secret_hash(secret: str) -> str:
    """SHA-256 hex of a session secret or a token (both 32 random bytes)."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    created_at: int
    disabled_at: int | None
    has_password: bool
    grants: tuple[Grant, ...]
    email: str | None = None  # where the day's reminders go
    reminder_emails: bool = True  # whether they go there
    language: str | None = None  # the pages' (and e-mails') language; None: the hub's


def grants_from(pairs: Iterable[tuple[str | None, str | None]]) -> tuple[Grant, ...]:
    """Grants from ``(role, site)`` pairs read in the order ``(role, site)``; a pair with no
    role (an outer join of a person without grants) or a role this version does not know
    gives none."""
    return tuple(Grant(Role(role), site) for role, site in pairs
                 if role in _ROLE_VALUES and site is not None)


_ROLE_VALUES = frozenset(r.value for r in Role)


def _grants_of(conn: Connection, user_id: int) -> tuple[Grant, ...]:
    rows = conn.execute(select(grants.c.role, grants.c.site).where(grants.c.user_id == user_id)
                        .order_by(grants.c.role, grants.c.site)).all()
    return grants_from((r.role, r.site) for r in rows)


def grants_of(conn: Connection, user_id: int) -> tuple[Grant, ...]:
    """The grants of the person with id ``user_id``."""
    return _grants_of(conn, user_id)


def _user(conn: Connection, row: object) -> User:
    r = row._mapping  # type: ignore[attr-defined]
    return User(id=r["id"], name=r["name"], created_at=r["created_at"],
                disabled_at=r["disabled_at"], has_password=r["password_hash"] is not None,
                grants=_grants_of(conn, r["id"]), email=r["email"],
                reminder_emails=bool(r["reminder_emails"]), language=r["language"])


def create_user(conn: Connection, *, name: str, password_hash: str | None,
                grants_given: list[Grant]) -> User:
    """A new person with ``grants_given``; NameTakenError for a name already taken as
    :func:`name_key` compares."""
    name = check_name(name)
    key = name_key(name)
    if conn.execute(select(users.c.id).where(users.c.name_key == key)).first() is not None:
        raise NameTakenError(f"the name {name!r} is taken (names differing only in case or "
                             "accents written another way are one name)")
    try:
        with conn.begin_nested():
            user_id = conn.execute(insert(users).values(
                name=name, name_key=key, password_hash=password_hash, created_at=now_us(),
            ).returning(users.c.id)).scalar_one()
    except IntegrityError:
        raise NameTakenError(f"the name {name!r} is taken") from None
    for g in grants_given:
        add_grant(conn, user_id=user_id, grant=g)
    return get_user(conn, name=name)


def find_user(conn: Connection, *, name: str) -> User | None:
    """The person named ``name`` (as :func:`name_key` compares), or None."""
    row = conn.execute(select(users).where(users.c.name_key == name_key(name))).first()
    return None if row is None else _user(conn, row)


def get_user(conn: Connection, *, name: str) -> User:
    """The person named ``name``, or UnknownAccountError."""
    user = find_user(conn, name=name)
    if user is None:
        raise UnknownAccountError(f"no account named {name!r}")
    return user


def get_user_by_id(conn: Connection, *, user_id: int) -> User:
    """The person with id ``user_id``, or UnknownAccountError."""
    row = conn.execute(select(users).where(users.c.id == user_id)).first()
    if row is None:
        raise UnknownAccountError(f"no account with id {user_id}")
    return _user(conn, row)


def password_hash_of(conn: Connection, *, name: str) -> tuple[int, str | None] | None:
    """(id, password hash) of an enabled account, or None (unknown or disabled)."""
    row = conn.execute(select(users.c.id, users.c.password_hash).where(
        users.c.name_key == name_key(name), users.c.disabled_at.is_(None))).first()
    return None if row is None else (row.id, row.password_hash)


def list_users(conn: Connection) -> list[User]:
    """Every person, by name."""
    return [_user(conn, row) for row in conn.execute(select(users).order_by(users.c.name_key))]


def add_grant(conn: Connection, *, user_id: int, grant: Grant) -> bool:
    """Give ``grant``; False when it was already given."""
    exists = conn.execute(select(grants.c.user_id).where(
        grants.c.user_id == user_id, grants.c.role == grant.role.value,
        grants.c.site == grant.site)).first()
    if exists is not None:
        return False
    conn.execute(insert(grants).values(user_id=user_id, role=grant.role.value, site=grant.site))
    return True


def remove_grant(conn: Connection, *, user_id: int, grant: Grant) -> bool:
    """Take ``grant`` away; False when it was not given."""
    result = conn.execute(delete(grants).where(
        grants.c.user_id == user_id, grants.c.role == grant.role.value,
        grants.c.site == grant.site))
    return bool(result.rowcount)


def set_password_hash(conn: Connection, *, user_id: int, password_hash: str | None) -> None:
    """Store a new password hash."""
    conn.execute(update(users).where(users.c.id == user_id).values(password_hash=password_hash))


def language_of(conn: Connection, *, user_id: int) -> str | None:
    """The language a person chose for the pages (None: their browser's, else the hub's)."""
    found: str | None = conn.execute(select(users.c.language).where(users.c.id == user_id)
                                     ).scalar_one_or_none()
    return found


def set_language(conn: Connection, *, user_id: int, language: str | None,
                 known: Collection[str]) -> None:
    """Keep ``language`` (one of ``known``: the languages the hub has catalogs for) as the
    person's; None forgets it. InvalidAccountValueError for another; UnknownAccountError
    for no such person."""
    if language is not None and language not in known:
        raise InvalidAccountValueError(f"no language {language!r} on this hub: use one of "
                                       f"{', '.join(known)}")
    done = conn.execute(update(users).where(users.c.id == user_id).values(language=language))
    if not done.rowcount:
        raise UnknownAccountError(f"no account with id {user_id}")


# An address as people type it: something@somewhere.tld, no spaces, quotes or brackets
# (what a school's mail account looks like; the mail server has the last word).
EMAIL_PATTERN = r"^[^\s@\"<>(),;:\[\]\\]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"  # noqa: E501


def check_email(email: str) -> str:
    """An e-mail address trimmed, or InvalidAccountValueError saying what is wrong."""
    email = email.strip()
    if len(email) > EMAIL_MAX:
        raise InvalidAccountValueError(f"an e-mail address has at most {EMAIL_MAX} characters")
    if re.fullmatch(EMAIL_PATTERN, email) is None:
        raise InvalidAccountValueError(f"{email!r} is not an e-mail address (write it as "
                                       "name@school.edu.co)")
    return email


def set_email(conn: Connection, *, user_id: int, email: str | None,
              reminder_emails: bool | None = None) -> None:
    """Keep ``email`` (checked; None or blank forgets it) as the address of a person's
    reminders, and whether they want them (None: as it was). UnknownAccountError for no
    such person."""
    values: dict[str, object] = {
        "email": None if email is None or not email.strip() else check_email(email)}
    if reminder_emails is not None:
        values["reminder_emails"] = reminder_emails
    done = conn.execute(update(users).where(users.c.id == user_id).values(**values))
    if not done.rowcount:
        raise UnknownAccountError(f"no account with id {user_id}")


def set_reminder_emails(conn: Connection, *, user_id: int, wanted: bool) -> None:
    """Whether a person wants the daily digest at their address."""
    done = conn.execute(update(users).where(users.c.id == user_id)
                        .values(reminder_emails=wanted))
    if not done.rowcount:
        raise UnknownAccountError(f"no account with id {user_id}")


def set_disabled(conn: Connection, *, user_id: int, disabled: bool) -> None:
    """Disable (every session and token stops working) or enable an account."""
    conn.execute(update(users).where(users.c.id == user_id)
                 .values(disabled_at=now_us() if disabled else None))
    if disabled:
        revoke_sessions(conn, user_id=user_id)


# Sessions --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class NewSession:
    secret: str  # goes into the cookie only
    csrf: str
    expires_at: int


def start_session(conn: Connection, *, user_id: int, hours: int, address: str | None
                  ) -> NewSession:
    """A new session of ``hours``; its secret is returned once."""
    secret = secrets.token_urlsafe(TOKEN_BYTES)
    csrf = secrets.token_urlsafe(TOKEN_BYTES)
    now = now_us()
    expires_at = now + hours * US_PER_HOUR
    conn.execute(insert(sessions).values(
        id=secret_hash(secret), user_id=user_id, created_at=now, expires_at=expires_at,
        last_seen_at=now, address=address, csrf=csrf))
    return NewSession(secret, csrf, expires_at)


@dataclass(frozen=True, slots=True)
class OpenSession:
    """A session that still works: its id (the stored hash, never the cookie's secret),
    when it began and was last used, and the address it began from."""

    id: str
    created_at: int
    last_seen_at: int
    expires_at: int
    address: str | None


def open_sessions(conn: Connection, *, user_id: int, now: int | None = None
                  ) -> list[OpenSession]:
    """The person's sessions not ended nor expired, last used first."""
    at = now_us() if now is None else now
    rows = conn.execute(select(sessions).where(
        sessions.c.user_id == user_id, sessions.c.revoked_at.is_(None),
        sessions.c.expires_at > at).order_by(sessions.c.last_seen_at.desc(), sessions.c.id))
    return [OpenSession(id=r.id, created_at=r.created_at, last_seen_at=r.last_seen_at,
                        expires_at=r.expires_at, address=r.address) for r in rows]


def revoke_session(conn: Connection, *, session_id: str) -> None:
    """End one session."""
    conn.execute(update(sessions).where(sessions.c.id == session_id,
                                        sessions.c.revoked_at.is_(None))
                 .values(revoked_at=now_us()))


def revoke_sessions(conn: Connection, *, user_id: int, keep: str | None = None) -> int:
    """End every session of a person (but the session ``keep``); how many were open."""
    which = (sessions.c.user_id == user_id) & sessions.c.revoked_at.is_(None)
    if keep is not None:
        which &= sessions.c.id != keep
    return conn.execute(update(sessions).where(which).values(revoked_at=now_us())).rowcount or 0


# API tokens ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ApiToken:
    id: str
    user_id: int
    name: str
    permissions: frozenset[Permission] | None
    created_at: int
    expires_at: int | None
    last_used_at: int | None
    revoked_at: int | None


def _api_token(row: object) -> ApiToken:
    r = row._mapping  # type: ignore[attr-defined]
    names = None if r["permissions"] is None else json.loads(r["permissions"])
    return ApiToken(id=r["id"], user_id=r["user_id"], name=r["name"],
                    permissions=None if names is None else frozenset(
                        Permission(n) for n in names if n in Permission.__members__.values()),
                    created_at=r["created_at"], expires_at=r["expires_at"],
                    last_used_at=r["last_used_at"], revoked_at=r["revoked_at"])


def token_permissions(wanted: frozenset[Permission] | None,
                      holds: frozenset[Permission]) -> frozenset[Permission]:
    """What a new token carries: ``wanted`` (None: all the person ``holds``), which must
    be a subset of ``holds``; InvalidAccountValueError naming what is not."""
    if wanted is None:
        return holds
    if not wanted <= holds:
        raise InvalidAccountValueError("a token carries only permissions its person has; "
                                       f"not: {', '.join(sorted(wanted - holds))}")
    return wanted


def create_api_token(conn: Connection, *, user_id: int, name: str,
                     permissions: frozenset[Permission] | None = None,
                     expires_at: int | None = None) -> tuple[ApiToken, str]:
    """A new API token and its secret text (shown once: only its hash is kept)."""
    name = check_name(name, "a token's name")
    token = PERSON_TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
    token_id = secrets.token_hex(8)
    conn.execute(insert(api_tokens).values(
        id=token_id, user_id=user_id, name=name, token_hash=secret_hash(token),
        permissions=None if permissions is None else json.dumps(sorted(permissions)),
        created_at=now_us(), expires_at=expires_at))
    row = conn.execute(select(api_tokens).where(api_tokens.c.id == token_id)).one()
    return _api_token(row), token


def list_api_tokens(conn: Connection, *, user_id: int | None = None) -> list[ApiToken]:
    """The tokens of one person (or everyone's), newest first."""
    query = select(api_tokens).order_by(api_tokens.c.created_at.desc(), api_tokens.c.id)
    if user_id is not None:
        query = query.where(api_tokens.c.user_id == user_id)
    return [_api_token(row) for row in conn.execute(query)]


def revoke_api_token(conn: Connection, *, token_id: str, user_id: int | None = None
                     ) -> ApiToken:
    """Revoke a token (of ``user_id`` when given); UnknownAccountError if there is none."""
    where = [api_tokens.c.id == token_id]
    if user_id is not None:
        where.append(api_tokens.c.user_id == user_id)
    row = conn.execute(select(api_tokens).where(*where)).first()
    if row is None:
        raise UnknownAccountError(f"no API token with id {token_id!r}")
    conn.execute(update(api_tokens).where(and_(*where), api_tokens.c.revoked_at.is_(None))
                 .values(revoked_at=now_us()))
    return _api_token(conn.execute(select(api_tokens).where(*where)).one())


def forget_api_tokens(conn: Connection, *, user_id: int, token_id: str | None = None,
                      now: int | None = None) -> int:
    """Delete ``user_id``'s token ``token_id``, or (without it) every one of theirs that
    has expired or was revoked by ``now``; how many went. For the short-lived tokens the
    ``labhub`` command makes for itself: the audit log keeps their trace."""
    where = [api_tokens.c.user_id == user_id]
    if token_id is not None:
        where.append(api_tokens.c.id == token_id)
    else:
        at = now_us() if now is None else now
        where.append(api_tokens.c.revoked_at.is_not(None) | (api_tokens.c.expires_at <= at))
    return int(conn.execute(delete(api_tokens).where(*where)).rowcount)


# Device tokens ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class DeviceToken:
    id: str
    device_id: str
    site: str | None
    name: str
    created_at: int
    last_used_at: int | None
    revoked_at: int | None


def _device_token(row: object) -> DeviceToken:
    r = row._mapping  # type: ignore[attr-defined]
    return DeviceToken(id=r["id"], device_id=r["device_id"], site=r["site"], name=r["name"],
                       created_at=r["created_at"], last_used_at=r["last_used_at"],
                       revoked_at=r["revoked_at"])


def create_device_token(conn: Connection, *, device_id: str, site: str | None, name: str
                        ) -> tuple[DeviceToken, str]:
    """A new device token and its secret text (shown once)."""
    name = check_name(name, "a token's name")
    token = DEVICE_TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
    token_id = secrets.token_hex(8)
    conn.execute(insert(device_tokens).values(
        id=token_id, device_id=device_id, site=site, name=name,
        token_hash=secret_hash(token), created_at=now_us()))
    row = conn.execute(select(device_tokens).where(device_tokens.c.id == token_id)).one()
    return _device_token(row), token


def list_device_tokens(conn: Connection, *, sites: frozenset[str] | None = None
                       ) -> list[DeviceToken]:
    """Device tokens (at ``sites`` when given), newest first."""
    query = select(device_tokens).order_by(device_tokens.c.created_at.desc())
    if sites is not None:
        query = query.where(device_tokens.c.site.in_(sorted(sites)))
    return [_device_token(row) for row in conn.execute(query)]


def get_device_token(conn: Connection, *, token_id: str) -> DeviceToken:
    """One device token, or UnknownAccountError."""
    row = conn.execute(select(device_tokens).where(device_tokens.c.id == token_id)).first()
    if row is None:
        raise UnknownAccountError(f"no device token with id {token_id!r}")
    return _device_token(row)


def revoke_device_token(conn: Connection, *, token_id: str) -> DeviceToken:
    """Revoke a device token."""
    get_device_token(conn, token_id=token_id)
    conn.execute(update(device_tokens).where(device_tokens.c.id == token_id,
                                             device_tokens.c.revoked_at.is_(None))
                 .values(revoked_at=now_us()))
    return get_device_token(conn, token_id=token_id)
