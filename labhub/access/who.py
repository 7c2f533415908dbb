"""Who a request comes from: ``Authorization: Bearer`` with a person's API token
(``lhp_...``) or a device token (``lhd_...``), or the session cookie ``labhub_session``.

Nothing is cached: every request looks its token or session up (one short read), so a
revoked token, an ended session or a disabled account stops working at once. The time a
token or session was last used is written at most once a minute (:data:`TOUCH_EVERY_US`),
so an upload path with a token costs one read, not a write, per request.

A request with a session cookie and an unsafe method (POST, PUT, PATCH, DELETE) must also
send ``X-CSRF-Token`` with the session's value: a form another site makes a browser send
cannot set a header. Bearer tokens need no such check (a browser never sends them by
itself).
"""

from __future__ import annotations

import hmac
import json

from fastapi import Request
from sqlalchemy import Connection, Engine, Table, Update, select, update
from sqlalchemy.exc import OperationalError

from labhub.access import accounts
from labhub.access.audit import now_us
from labhub.access.caller import Caller
from labhub.access.tables import api_tokens, device_tokens, sessions, users
from labhub.problems import Problem

SESSION_COOKIE = "labhub_session"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
TOUCH_EVERY_US = 60_000_000  # last_used_at is written at most once a minute per token
# Signing in again (or joining a class) with an old cookie still in the browser needs no
# CSRF token: the cookie is not used there.
SIGN_IN_PATH = "/api/v1/auth/sign-in"
COOKIE_FREE_PATHS = frozenset({SIGN_IN_PATH, "/api/v1/classes/join"})
_SEEN = "labhub_identified"


def address_of(request: Request) -> str | None:
    """The address the request came from."""
    return request.client.host if request.client else None


def identify(request: Request) -> Caller | None:
    """The caller of ``request``, or None when it proves nobody (the gate answers 401)."""
    if _SEEN in request.scope:
        seen: Caller | None = request.scope[_SEEN]
        return seen
    caller = _identify(request)
    request.scope[_SEEN] = caller
    return caller


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.hub.engine
    return engine


def _identify(request: Request) -> Caller | None:
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or len(token) > 200:
            return None
        if token.startswith(accounts.PERSON_TOKEN_PREFIX):
            return _person_token(request, token)
        if token.startswith(accounts.DEVICE_TOKEN_PREFIX):
            return _device_token(request, token)
        return None
    secret = request.cookies.get(SESSION_COOKIE)
    if secret and request.url.path not in COOKIE_FREE_PATHS and len(secret) <= 200:
        return _session(request, secret)
    return None


def _touch(conn: Connection, table: Table, key: str, last: int | None) -> None:
    """Write ``last_used_at`` now, unless it was written less than a minute ago."""
    now = now_us()
    if last is not None and now - last < TOUCH_EVERY_US:
        return
    _best_effort(conn, update(table).where(table.c.id == key).values(last_used_at=now))


def _best_effort(conn: Connection, statement: Update) -> None:
    """Write a last-used time unless the database stays busy (past its busy timeout): a
    request never fails for it (a later one writes it)."""
    try:
        conn.execute(statement)
        conn.commit()
    except OperationalError:
        conn.rollback()


def _person_token(request: Request, token: str) -> Caller | None:
    now = now_us()
    with _engine(request).connect() as conn:
        row = conn.execute(
            select(api_tokens.c.id, api_tokens.c.permissions, api_tokens.c.last_used_at,
                   users.c.id.label("user_id"), users.c.name)
            .join(users, users.c.id == api_tokens.c.user_id)
            .where(api_tokens.c.token_hash == accounts.secret_hash(token),
                   api_tokens.c.revoked_at.is_(None), users.c.disabled_at.is_(None))
            .where((api_tokens.c.expires_at.is_(None)) | (api_tokens.c.expires_at > now))
        ).first()
        if row is None:
            return None
        given = accounts.grants_of(conn, row.user_id)
        _touch(conn, api_tokens, row.id, row.last_used_at)
    permissions = None if row.permissions is None else accounts.check_permissions(
        json.loads(row.permissions))
    return Caller(name=row.name, via="token", grants=given, user_id=row.user_id,
                  token_permissions=permissions, address=address_of(request))


def _device_token(request: Request, token: str) -> Caller | None:
    with _engine(request).connect() as conn:
        row = conn.execute(
            select(device_tokens.c.id, device_tokens.c.device_id, device_tokens.c.site,
                   device_tokens.c.last_used_at)
            .where(device_tokens.c.token_hash == accounts.secret_hash(token),
                   device_tokens.c.revoked_at.is_(None))).first()
        if row is None:
            return None
        _touch(conn, device_tokens, row.id, row.last_used_at)
    return Caller(name=f"device {row.device_id}", via="device", device_id=row.device_id,
                  device_site=row.site, address=address_of(request))


def _session(request: Request, secret: str) -> Caller | None:
    session_id = accounts.secret_hash(secret)
    now = now_us()
    with _engine(request).connect() as conn:
        row = conn.execute(
            select(sessions.c.csrf, sessions.c.last_seen_at, users.c.id.label("user_id"),
                   users.c.name)
            .join(users, users.c.id == sessions.c.user_id)
            .where(sessions.c.id == session_id, sessions.c.revoked_at.is_(None),
                   sessions.c.expires_at > now, users.c.disabled_at.is_(None))).first()
        if row is None:
            return None
        if request.method in UNSAFE_METHODS and not _same(
                request.headers.get(CSRF_HEADER), row.csrf):
            raise Problem(403, "Forbidden", "missing or wrong CSRF token: a write with the "
                          f"session cookie must send the header {CSRF_HEADER} with the "
                          "csrf_token the sign-in answered")
        given = accounts.grants_of(conn, row.user_id)
        last = row.last_seen_at
        if now - last >= TOUCH_EVERY_US:
            _best_effort(conn, update(sessions).where(sessions.c.id == session_id)
                         .values(last_seen_at=now))
    request.state.session_id = session_id
    request.state.csrf = row.csrf
    return Caller(name=row.name, via="session", grants=given, user_id=row.user_id,
                  address=address_of(request))


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())
