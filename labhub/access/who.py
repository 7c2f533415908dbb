"""Who a request comes from: ``Authorization: Bearer`` with a person's API token
(``lhp_...``), a device token (``lhd_...``) or, on a central, a hub's credential
(``lhh_...``, made when the hub joined: :mod:`labhub.network.central`), or the session
cookie ``labhub_session``. A hub credential that was withdrawn, or whose lab enrolled a
replacement hub, is a 401 that says which and when.

Nothing is cached: every request looks its token or session up, so a revoked token, an
ended session or a disabled account stops working at once. The look-up is one query (the
token or session, its person and the person's grants, joined), built once when this module
is imported: building a SQLAlchemy statement costs more than SQLite takes to answer it
(``bench/auth.py`` measures it). The time a token or session was last used is written at
most once a minute (:data:`TOUCH_EVERY_US`), so an upload with a token costs one read, not
a write, per request.

A request with a session cookie and an unsafe method (POST, PUT, PATCH, DELETE) must also
send ``X-CSRF-Token`` with the session's value: a form another site makes a browser send
cannot set a header. Bearer tokens need no such check (a browser never sends them by
itself).

The web pages' forms cannot set a header: every page's form (:func:`is_page_path`) sends
the session's CSRF value in a hidden field (:data:`CSRF_FORM_FIELD`), which its page route
checks against ``request.state.csrf``; the sign-in form needs no session, like the API's.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Sequence
from typing import Any

from fastapi import Request
from sqlalchemy import Connection, Engine, Table, Update, bindparam, or_, select, update
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from labhub.access import accounts
from labhub.access.audit import now_us
from labhub.access.caller import Caller
from labhub.access.permissions import Grant
from labhub.access.tables import api_tokens, device_tokens, grants, sessions, users
from labhub.network.protocol import CREDENTIAL_PREFIX
from labhub.network.tables import network_hubs
from labhub.problems import Problem

log = logging.getLogger(__name__)

SESSION_COOKIE = "labhub_session"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
TOUCH_EVERY_US = 60_000_000  # last_used_at is written at most once a minute per token
# Signing in again (or joining a class) with an old cookie still in the browser needs no
# CSRF token: the cookie is not used there.
SIGN_IN_PATH = "/api/v1/auth/sign-in"
COOKIE_FREE_PATHS = frozenset({SIGN_IN_PATH, "/api/v1/classes/join", "/signin"})
# Page form posts: every path outside the API is a web page, whose route checks the CSRF
# value of a hidden field (or the header) itself (labhub.web.pages.signed_form).
API_PREFIX = "/api/"
# API paths outside the prefix: Prometheus's default (labhub.api.metrics). Their errors are
# problem+json, as the API's.
API_PATHS = frozenset({"/metrics"})


def is_page_path(path: str) -> bool:
    """Whether ``path`` is one of the web pages' (they check a form's CSRF field)."""
    return not path.startswith(API_PREFIX) and path not in API_PATHS


CSRF_FORM_FIELD = "csrf_token"
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
        if token.startswith(CREDENTIAL_PREFIX):
            return _hub_credential(request, token)
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


# The look-ups, built once (SQLAlchemy caches their compiled SQL): a token or session with
# its person and every grant of the person, one row per grant (one with no grant: none).
_PERSON_TOKEN = (
    select(api_tokens.c.id, api_tokens.c.permissions, api_tokens.c.last_used_at,
           users.c.id.label("user_id"), users.c.name, users.c.language, grants.c.role,
           grants.c.site)
    .select_from(api_tokens.join(users, users.c.id == api_tokens.c.user_id)
                 .outerjoin(grants, grants.c.user_id == users.c.id))
    .where(api_tokens.c.token_hash == bindparam("token_hash"),
           api_tokens.c.revoked_at.is_(None), users.c.disabled_at.is_(None),
           or_(api_tokens.c.expires_at.is_(None), api_tokens.c.expires_at > bindparam("now")))
    .order_by(grants.c.role, grants.c.site))
_DEVICE_TOKEN = (
    select(device_tokens.c.id, device_tokens.c.device_id, device_tokens.c.site,
           device_tokens.c.last_used_at)
    .where(device_tokens.c.token_hash == bindparam("token_hash"),
           device_tokens.c.revoked_at.is_(None)))
_SESSION = (
    select(sessions.c.csrf, sessions.c.last_seen_at, users.c.id.label("user_id"),
           users.c.name, users.c.language, grants.c.role, grants.c.site)
    .select_from(sessions.join(users, users.c.id == sessions.c.user_id)
                 .outerjoin(grants, grants.c.user_id == users.c.id))
    .where(sessions.c.id == bindparam("session_id"), sessions.c.revoked_at.is_(None),
           sessions.c.expires_at > bindparam("now"), users.c.disabled_at.is_(None))
    .order_by(grants.c.role, grants.c.site))


def _grants(rows: Sequence[Any]) -> tuple[Grant, ...]:
    return accounts.grants_from((row.role, row.site) for row in rows)


def _person_token(request: Request, token: str) -> Caller | None:
    with _engine(request).connect() as conn:
        rows = conn.execute(_PERSON_TOKEN, {"token_hash": accounts.secret_hash(token),
                                            "now": now_us()}).all()
        if not rows:
            return None
        row = rows[0]
        _touch(conn, api_tokens, row.id, row.last_used_at)
    permissions = None if row.permissions is None else accounts.check_permissions(
        json.loads(row.permissions))
    return Caller(name=row.name, via="token", grants=_grants(rows), user_id=row.user_id,
                  token_permissions=permissions, address=address_of(request),
                  language=row.language)


def _device_token(request: Request, token: str) -> Caller | None:
    with _engine(request).connect() as conn:
        row = conn.execute(_DEVICE_TOKEN, {"token_hash": accounts.secret_hash(token)}).first()
        if row is None:
            return None
        _touch(conn, device_tokens, row.id, row.last_used_at)
    return Caller(name=f"device {row.device_id}", via="device", device_id=row.device_id,
                  device_site=row.site, address=address_of(request))


_HUB = (
    select(network_hubs.c.id, network_hubs.c.site, network_hubs.c.name,
           network_hubs.c.revoked_at, network_hubs.c.replaced_by)
    .where(network_hubs.c.credential_hash == bindparam("credential_hash")))


def _hub_credential(request: Request, credential: str) -> Caller | None:
    """A hub's caller (``network.sync`` at its lab); a revoked hub's credential is a 401
    saying it was replaced or withdrawn, and when."""
    with _engine(request).connect() as conn:
        row = conn.execute(_HUB, {"credential_hash": accounts.secret_hash(credential)}
                           ).first()
    if row is None:
        return None
    if row.revoked_at is not None:
        from labhub.network.central import revoked_detail

        raise Problem(401, "Hub credential revoked",
                      revoked_detail(row.id, row.site, row.revoked_at, row.replaced_by))
    return Caller(name=f"hub {row.name} ({row.site})", via="hub", hub_id=row.id,
                  hub_site=row.site, address=address_of(request))


def _log_csrf_refusal(request: Request, name: str) -> None:
    """The audit entry of a cookie write without its CSRF header (bounded like every
    refusal); a database that cannot take it does not change the answer."""
    from labhub.access.trail import record_refusal  # trail reads addresses from here

    try:
        record_refusal(request, status=403, permission=None, actor=name,
                       why=f"missing or wrong {CSRF_HEADER} header")
    except SQLAlchemyError as exc:
        log.warning("the CSRF refusal of %s could not be written to the audit log: %s",
                    request.url.path, exc)


def _session(request: Request, secret: str) -> Caller | None:
    session_id = accounts.secret_hash(secret)
    now = now_us()
    with _engine(request).connect() as conn:
        rows = conn.execute(_SESSION, {"session_id": session_id, "now": now}).all()
        if not rows:
            return None
        row = rows[0]
        if (request.method in UNSAFE_METHODS and not is_page_path(request.url.path)
                and not _same(request.headers.get(CSRF_HEADER), row.csrf)):
            _log_csrf_refusal(request, row.name)
            raise Problem(403, "Forbidden", "missing or wrong CSRF token: a write with the "
                          f"session cookie must send the header {CSRF_HEADER} with the "
                          "csrf_token the sign-in answered")
        if now - row.last_seen_at >= TOUCH_EVERY_US:
            _best_effort(conn, update(sessions).where(sessions.c.id == session_id)
                         .values(last_seen_at=now))
    request.state.session_id = session_id
    request.state.csrf = row.csrf
    return Caller(name=row.name, via="session", grants=_grants(rows), user_id=row.user_id,
                  address=address_of(request), language=row.language)


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())
